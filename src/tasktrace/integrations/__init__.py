"""Job systems instrumented with no targets to list: Celery, RQ, Dramatiq, Huey and arq.

``tasktrace.initialize()`` registers one post-import hook per enabled integration
(``[integrations] <name> = true``, the default; the table is ``tasktrace.agent``'s), on the
module of that library whose import means the library is in use. Neither the library nor
this package is imported before the program imports the library itself, so a program that
never uses a job system pays one dict entry per integration.

Each integration uses the job system's own extension points (see its module):

* :mod:`._celery` -- Celery's signals (``task_prerun``/``task_postrun``/``task_failure``/
  ``task_retry`` in the worker, ``before_task_publish``/``after_task_publish`` in the
  producer);
* :mod:`._rq` -- RQ's ``Job.perform`` and ``Queue.enqueue_job``;
* :mod:`._dramatiq` -- a Dramatiq middleware, added to every broker as it is built;
* :mod:`._huey` -- Huey's ``pre_execute``/``post_execute`` hooks and signals, connected as
  each ``Huey`` is built, and ``Huey.enqueue``;
* :mod:`._arq` -- each job function's coroutine, wrapped as an arq ``Worker`` is built,
  and ``ArqRedis.enqueue_job``.

What they share (opening a job's transaction, trace context, the enqueue trace) is in
:mod:`._jobs` and :mod:`._context`. A config target may name a job system's task object
(a Celery ``@app.task``): :mod:`._targets` says what it is, and the hooks hand it to the
integration instead of wrapping it.
"""

from __future__ import annotations

"""Send the example's messages inside one transaction (run it under tasktrace-admin
run-program: the sends are traced and the messages carry the trace to the workers).

tasktrace-admin run-program python enqueue.py
"""

import actors

import tasktrace

with tasktrace.BackgroundTask(name="signup batch", group="Signup"):
    for user_id in range(1, 6):
        actors.send_welcome.send(user_id)
        actors.sync_crm.send(user_id)
print("sent 10 messages")

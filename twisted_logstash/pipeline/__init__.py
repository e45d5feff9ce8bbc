"""What moves events and knows no wire bytes: output policy, balancer, backoff, queues,
dead letter, sources, sinks.
"""

"""A Ray cluster on ECS (EC2 capacity) whose worker count follows Serve's demand.

`python -m cluster.ecs deploy|scale|status [--dry-run]`; `publish` runs on the head.
config.py (settings), spec.py (the AWS requests as plain data), commands.py (what the head
and worker containers run), apply.py (boto3), demand.py (Serve's state -> metrics, pure),
publish.py (reads Serve, writes CloudWatch), status.py, cli.py.
"""

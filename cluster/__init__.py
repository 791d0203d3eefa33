"""Running the graph on a Ray cluster: aws/ (`ray up`), ecs/ (a boto3 tool), kuberay/."""

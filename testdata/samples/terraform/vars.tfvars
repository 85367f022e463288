bucket_name = "threeport-example-logs"

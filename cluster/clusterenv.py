"""The cluster's shared settings, as cluster/run.sh wrote them to
$CLUSTER_DIR/cluster.env, for cluster/tests.py and cluster/bench.py."""
import os
import shlex

CLUSTER_DIR = os.environ["CLUSTER_DIR"]
with open(os.path.join(CLUSTER_DIR, "cluster.env")) as f:
    ENV = dict(shlex.split(line)[0].split("=", 1) for line in f if line.strip())
PORT = int(ENV["HAPROXY_PORT"])
SOCK = ENV["HAPROXY_SOCK"]
REPLICAS = int(ENV["REPLICAS"])

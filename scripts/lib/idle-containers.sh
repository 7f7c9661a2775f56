# Idle busybox containers for the benchmarks, labelled so they can be removed as a set.
# Source it; needs a running dockerd and the m4watch-test-busybox image (scripts/test.sh
# makes both).

# idle_containers_start PREFIX N: N containers named PREFIX1..PREFIXN, no network.
idle_containers_start() {
  local i
  for i in $(seq 1 "$2"); do
    docker run -d --name "$1$i" --label "m4watch.bench=$1" --network none \
      m4watch-test-busybox sh -c "trap 'exit 0' TERM; sleep 3600 & wait" >/dev/null
  done
}

# idle_containers_remove PREFIX: removes every container idle_containers_start made.
idle_containers_remove() {
  local ids
  ids=$(docker ps -aq --filter "label=m4watch.bench=$1")
  if [ -n "$ids" ]; then docker rm -f $ids >/dev/null; fi
}

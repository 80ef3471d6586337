#!/usr/bin/env bash
# Blue-green switch behind nginx, both releases wrapped by zerodown:
#
#   bash examples/bluegreen/switch.sh 10.0.0.8:8000 10.0.0.9:8000   # the green instances
#
# then stop the blue instances with SIGTERM (systemctl stop, docker stop, kill). zerodown
# keeps them serving through the lame-duck delay, so requests nginx's old workers still
# hold, and connections kept alive to blue, are answered before blue goes.
# UPSTREAM_FILE is the file nginx.conf includes; NGINX is how to call nginx.
set -euo pipefail
upstream_file="${UPSTREAM_FILE:-/etc/nginx/upstream.inc}"
read -r -a nginx <<<"${NGINX:-nginx}"

# 1. Every green instance must be ready: started, startup checks passed, dependencies up.
for instance in "$@"; do
  zerodown wait-ready "http://$instance" --timeout 120
done

# 2. Point nginx at green. The reload starts new workers with the new upstream; the old
#    workers finish the requests they hold, then exit.
printf 'server %s;\n' "$@" >"$upstream_file.new"
mv "$upstream_file.new" "$upstream_file"
"${nginx[@]}" -s reload
echo "nginx now sends every new request to: $*"

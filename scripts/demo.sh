#!/usr/bin/env bash
# Run the demo: a producer and a consumer exchanging jobs through beanstalkd.
# With no argument it starts its own beanstalkd on a free loopback port;
# pass HOST:PORT or a unix socket path to use a running server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python demo.py "$@"

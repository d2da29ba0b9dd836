#!/usr/bin/env python3
"""Lists the gRPC services a Lockstep server offers over reflection, with
Python's reflection client, as an operator's tool would.

Usage: scripts/reflection-check.py HOST:PORT [SERVICE ...]
Exits 1 unless every SERVICE named is listed. Needs `pip install grpcio
grpcio-reflection protobuf`.
"""
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    channel = grpc.insecure_channel(sys.argv[1])
    services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
    for s in services:
        print(s)
    missing = [s for s in sys.argv[2:] if s not in services]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

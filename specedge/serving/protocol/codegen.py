"""Regenerate the checked-in gRPC stubs: ``python -m specedge.serving.protocol.codegen``.

Run from anywhere; needs grpcio-tools (a dev dependency). The stubs are committed so that a
plain install never needs a protobuf compiler.
"""

from __future__ import annotations

import sys

from grpc_tools import protoc

from specedge import PROJECT_ROOT


def main() -> int:
    proto = "specedge/serving/protocol/specedge.proto"
    args = ["grpc_tools.protoc", f"-I{PROJECT_ROOT}", f"--python_out={PROJECT_ROOT}",
            f"--pyi_out={PROJECT_ROOT}", f"--grpc_python_out={PROJECT_ROOT}",
            str(PROJECT_ROOT / proto)]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())

"""Compiles the repo's proto/touchpoint/v1/*.proto with grpcio-tools into a temp dir at start-up
(no generated code is committed) and imports the modules."""

import importlib
import os
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(ROOT, "proto")


def load():
    """Returns (decisions_pb2, decisions_pb2_grpc, profiles_pb2, profiles_pb2_grpc, common_pb2)."""
    out = tempfile.mkdtemp(prefix="tp-peer-proto-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(
        os.path.join("touchpoint", "v1", f) for f in os.listdir(os.path.join(PROTO_DIR, "touchpoint", "v1")) if f.endswith(".proto")
    )
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}", *files])
    if rc != 0:
        raise SystemExit(f"peer: protoc failed ({rc})")
    sys.path.insert(0, out)
    mods = ["decisions_pb2", "decisions_pb2_grpc", "profiles_pb2", "profiles_pb2_grpc", "common_pb2"]
    return tuple(importlib.import_module(f"touchpoint.v1.{m}") for m in mods)

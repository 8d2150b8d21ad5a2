"""Protobuf and gRPC modules generated from the .proto files by tools/generate_protos.py."""

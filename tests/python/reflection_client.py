#!/usr/bin/env python3
"""A dashboard's view of minerd, with nothing but grpcio and server reflection.

Usage: reflection_client.py TARGET [TOKEN] [--ca CERT.pem]

TARGET is a grpcio target with default channel options: `unix:/path/minerd.sock`, or
`host:port` for the TCP listener (then TOKEN is sent as `authorization: Bearer TOKEN`).
With --ca the channel speaks TLS and trusts the PEM certificate(s) in CERT.pem: the daemon's
own self-signed certificate (`minerd tls-init`) or the CA that issued it.
Lists the services by reflection, builds the message classes from the reflected file
descriptors (no generated stubs, no .proto files), asks grpc.health.v1.Health for the
miner service and calls spacetime.miner.v1.MinerService/GetStatus. Prints one JSON object:
{"services": [...], "health": "SERVING", "status": {...GetStatus response as JSON...}}.
Any failure is an exception and a non-zero exit.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

MINER = "spacetime.miner.v1.MinerService"


def reflect(channel, metadata):
    """Returns (service names, descriptor pool holding the miner service's files)."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    def ask(**kw):
        (resp,) = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(**kw)]),
                metadata=metadata,
                timeout=10,
            )
        )
        if resp.HasField("error_response"):
            raise RuntimeError(f"reflection error: {resp.error_response}")
        return resp

    services = sorted(s.name for s in ask(list_services="").list_services_response.service)
    protos = {}
    pending = list(ask(file_containing_symbol=MINER).file_descriptor_response.file_descriptor_proto)
    while pending:
        fd = descriptor_pb2.FileDescriptorProto.FromString(pending.pop())
        if fd.name in protos:
            continue
        protos[fd.name] = fd
        for dep in fd.dependency:
            if dep not in protos:
                pending.extend(ask(file_by_filename=dep).file_descriptor_response.file_descriptor_proto)
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in protos[name].dependency:
            add(dep)
        pool.Add(protos[name])
        added.add(name)

    for name in protos:
        add(name)
    return services, pool


def main():
    args = sys.argv[1:]
    ca = None
    if "--ca" in args:
        i = args.index("--ca")
        with open(args[i + 1], "rb") as f:
            ca = f.read()
        del args[i : i + 2]
    target = args[0]
    metadata = [("authorization", f"Bearer {args[1]}")] if len(args) > 1 else None
    # Default options: no authority override, nothing a dashboard author would not write.
    if ca is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca))
    with channel:
        services, pool = reflect(channel, metadata)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=MINER), metadata=metadata, timeout=10
        )
        method = pool.FindServiceByName(MINER).FindMethodByName("GetStatus")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        get_status = channel.unary_unary(
            f"/{MINER}/GetStatus",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        status = get_status(request_cls(), metadata=metadata, timeout=10)
        print(
            json.dumps(
                {
                    "services": services,
                    "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                    "status": json_format.MessageToDict(status),
                }
            )
        )


if __name__ == "__main__":
    main()

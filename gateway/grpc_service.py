"""The KServe v2 gRPC GRPCInferenceService, forwarded to Triton with only the target rewritten."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritium.errors import NotFoundError, TritiumError, UnavailableError
from tritium.gateway import metrics
from tritium.gateway.auth import check_admin, presented_credential
from tritium.gateway.core import Gateway
from tritium.gateway.error_mapping import (
    VARIANT_HEADER,
    from_triton_grpc,
    from_triton_stream,
    grpc_code,
    internal_error,
    triton_answered,
)
from tritium.gateway.router import Decision

VARIANT_PARAMETER = "tritium_variant"
IN_FLIGHT = metrics.IN_FLIGHT.labels(protocol="grpc")


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _actor(metadata: dict[str, str], context: grpc.aio.ServicerContext) -> str:
    """Who acts, as the admin API writes it: `<x-tritium-actor>@<client address>`."""
    who = metadata.get("x-tritium-actor", "admin")[:64]
    peer = context.peer() or "?"  # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"
    host = peer.partition(":")[2].rpartition(":")[0].strip("[]") or peer
    return f"{who}@{host}"


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.timeout = gateway.settings.upstream_timeout_s

    async def _abort(self, context: grpc.aio.ServicerContext, exc: TritiumError, variant: str | None = None):  # type: ignore[no-untyped-def]
        trailing = ((VARIANT_HEADER, variant),) if variant else ()
        await context.abort(grpc_code(exc), exc.one_line(), trailing_metadata=trailing)

    async def _call(self, method, request, decision: Decision):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise from_triton_grpc(error, decision, self.gateway.upstream.grpc_url) from None

    async def ModelInfer(self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext):
        gateway = self.gateway
        started = time.perf_counter()
        model = request.model_name
        decision: Decision | None = None
        upstream_s: float | None = None
        status = 500
        IN_FLIGHT.inc()
        try:
            metadata = _metadata(context)
            gateway.authorize(metadata)
            decision = gateway.decide(
                model, request.model_version, metadata.get(gateway.sticky_header(model))
            )
            request.model_name = decision.model
            request.model_version = decision.version
            upstream_started = time.perf_counter()
            try:
                response = await gateway.upstream.stub.ModelInfer(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                if triton_answered(error):
                    upstream_s = time.perf_counter() - upstream_started
                raise from_triton_grpc(error, decision, gateway.upstream.grpc_url) from None
            upstream_s = time.perf_counter() - upstream_started
            shadow = gateway.shadow_for(model)
            if shadow is not None:  # only requests the primary answered, like REST
                self._mirror(shadow, request)
            response.parameters[VARIANT_PARAMETER].string_param = decision.variant
            context.set_trailing_metadata(((VARIANT_HEADER, decision.variant),))
            status = 200
            return response
        except TritiumError as exc:
            status = exc.http_status
            await self._abort(context, exc, decision.variant if decision else None)
        except Exception as exc:
            error = internal_error(exc)
            status = error.http_status
            await self._abort(context, error, decision.variant if decision else None)
        finally:
            IN_FLIGHT.dec()
            gateway.record(decision, model, "grpc", status, time.perf_counter() - started, upstream_s)

    def _mirror(self, shadow: Decision, request: service_pb2.ModelInferRequest) -> None:
        """Send `request` again to the shadow target: re-targeted in place, no copy (the primary call is
        over and nothing reads the message after it); it is serialised in the shadow's own task."""
        request.model_name = shadow.model
        request.model_version = shadow.version
        stub, timeout = self.gateway.upstream.stub, self.timeout

        async def send() -> bool:
            await stub.ModelInfer(request, timeout=timeout)
            return True

        self.gateway.shadows.submit(shadow, send)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[service_pb2.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ):
        """Each request is routed on its way in and recorded when its first response comes back.

        Requests are matched to responses by id: the gateway sends `<n>:<client id>` to Triton and
        gives the client its own id back.
        """
        gateway = self.gateway
        metadata = _metadata(context)
        try:
            gateway.authorize(metadata)
        except TritiumError as exc:
            await self._abort(context, exc)
        pending: dict[str, tuple[Decision, float]] = {}
        numbers = itertools.count()

        async def routed() -> AsyncIterator[service_pb2.ModelInferRequest]:
            async for request in request_iterator:
                decision = gateway.decide(
                    request.model_name,
                    request.model_version,
                    metadata.get(gateway.sticky_header(request.model_name)),
                )
                number = str(next(numbers))
                pending[number] = (decision, time.perf_counter())
                request.id = f"{number}:{request.id}"
                request.model_name = decision.model
                request.model_version = decision.version
                yield request

        try:
            async for response in gateway.upstream.stub.ModelStreamInfer(routed()):
                self._answer_streamed(response, pending)
                yield response
        except grpc.aio.AioRpcError as error:
            failure = from_triton_grpc(error, Decision("", "", "", "", False), gateway.upstream.grpc_url)
            now = time.perf_counter()
            for decision, sent in pending.values():
                gateway.record(decision, decision.public_model, "grpc", failure.http_status, now - sent, None)
            await self._abort(context, failure)

    def _answer_streamed(
        self, response: service_pb2.ModelStreamInferResponse, pending: dict[str, tuple[Decision, float]]
    ) -> None:
        """Give the client its request id back and record the request at its first response."""
        answer = response.infer_response
        number, separator, client_id = answer.id.partition(":")
        if not separator:
            return
        answer.id = client_id
        if response.error_message:
            tag = f"[request id: {number}:{client_id}] "
            response.error_message = response.error_message.replace(
                tag, f"[request id: {client_id}] " if client_id else ""
            )
        entry = pending.pop(number, None)
        if entry is None:  # a later response of a decoupled model: recorded already
            return
        decision, sent = entry
        latency = time.perf_counter() - sent
        if response.error_message:
            status = from_triton_stream(response.error_message, decision).http_status
        else:
            status = 200
            answer.parameters[VARIANT_PARAMETER].string_param = decision.variant
        self.gateway.record(decision, decision.public_model, "grpc", status, latency, latency)

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        ready, _ = await self.gateway.upstream.server_ready()
        return service_pb2.ServerReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context):
        try:
            return await self._call(
                self.gateway.upstream.stub.ServerMetadata, request, Decision("", "", "", "", False)
            )
        except TritiumError as exc:
            await self._abort(context, exc)

    async def _model_call(self, method_name: str, request, context, rename):  # type: ignore[no-untyped-def]
        try:
            self.gateway.authorize(_metadata(context))
            decision = self.gateway.resolve(request.name, request.version)
            request.name = decision.model
            request.version = "" if rename is not None and decision.chosen_by_route else decision.version
            response = await self._call(getattr(self.gateway.upstream.stub, method_name), request, decision)
            if rename is not None and decision.model != decision.public_model:
                rename(response, decision.public_model)
            return response
        except TritiumError as exc:
            await self._abort(context, exc)

    async def ModelReady(self, request, context):
        return await self._model_call("ModelReady", request, context, None)

    async def ModelMetadata(self, request, context):
        def rename(response, name):  # type: ignore[no-untyped-def]
            response.name = name

        return await self._model_call("ModelMetadata", request, context, rename)

    async def ModelConfig(self, request, context):
        def rename(response, name):  # type: ignore[no-untyped-def]
            response.config.name = name

        return await self._model_call("ModelConfig", request, context, rename)

    async def ModelStatistics(self, request, context):
        return await self._model_call("ModelStatistics", request, context, None)

    async def _admin_call(self, method_name: str, request, context, audit_action: str | None = None):  # type: ignore[no-untyped-def]
        try:
            metadata = _metadata(context)
            check_admin(presented_credential(metadata), self.gateway.admin_token)
            response = await self._call(
                getattr(self.gateway.upstream.stub, method_name), request, Decision("", "", "", "", False)
            )
            if audit_action is not None:  # like POST /admin/models/{model}/load|unload
                await self.gateway.store.audit_only(
                    request.model_name, audit_action, _actor(metadata, context)
                )
            return response
        except TritiumError as exc:
            await self._abort(context, exc)

    async def RepositoryIndex(self, request, context):
        return await self._admin_call("RepositoryIndex", request, context)

    async def RepositoryModelLoad(self, request, context):
        return await self._admin_call("RepositoryModelLoad", request, context, audit_action="load")

    async def RepositoryModelUnload(self, request, context):
        return await self._admin_call("RepositoryModelUnload", request, context, audit_action="unload")

    async def _not_served(self, request, context):  # type: ignore[no-untyped-def]
        await self._abort(
            context,
            NotFoundError(
                "shared memory, tracing and logging settings are not served by the gateway",
                hint="the gateway and Triton do not share memory; send tensors in the request",
            ),
        )

    SystemSharedMemoryStatus = SystemSharedMemoryRegister = SystemSharedMemoryUnregister = _not_served
    CudaSharedMemoryStatus = CudaSharedMemoryRegister = CudaSharedMemoryUnregister = _not_served
    TraceSetting = LogSettings = _not_served


def add_to_server(server: grpc.aio.Server, gateway: Gateway) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(gateway), server)


__all__ = ["InferenceServicer", "UnavailableError", "add_to_server"]

"""The KServe v2 gRPC GRPCInferenceService, forwarded to Triton with only the target rewritten.

Methods raise :class:`tritium.errors.TritiumError`; one interceptor (:class:`ErrorInterceptor`)
turns every exception into the gRPC status of its class, so no method builds a status itself.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritium.errors import NotFoundError, TritiumError, UserInputError
from tritium.gateway import metrics
from tritium.gateway.admission import check_model_name, check_tensor
from tritium.gateway.auth import check_admin, presented_credential
from tritium.gateway.core import Call, Gateway
from tritium.gateway.error_mapping import (
    REQUEST_ID_HEADER,
    VARIANT_HEADER,
    from_triton_grpc,
    from_triton_stream,
    grpc_code,
    internal_error,
    triton_answered,
)
from tritium.gateway.overrides import describe_load, refuse_overrides
from tritium.gateway.router import Decision
from tritium.gateway.shadow_compare import Undecodable, grpc_outputs, row_scores
from tritium.triton_errors import TritonCall

VARIANT_PARAMETER = "tritium_variant"
IN_FLIGHT = metrics.IN_FLIGHT.labels(protocol="grpc")
NO_DECISION = Decision("", "", "", "", False)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _actor(metadata: dict[str, str], context: grpc.aio.ServicerContext) -> str:
    """Who acts, as the admin API writes it: `<x-tritium-actor>@<client address>`."""
    who = metadata.get("x-tritium-actor", "admin")[:64]
    peer = context.peer() or "?"  # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"
    host = peer.partition(":")[2].rpartition(":")[0].strip("[]") or peer
    return f"{who}@{host}"


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Every exception a method raises becomes the gRPC status of its error class, in one place.

    A :class:`TritiumError` carries its status and one-line message (and the variant that served
    the request, as trailing metadata, when the method set ``exc.variant``); anything else is a
    gateway bug: INTERNAL with an incident id, the traceback in the log.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            wrapped = self._wrapped[method] = _wrap(handler)
        return wrapped


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    error = exc if isinstance(exc, TritiumError) else internal_error(exc)
    trailing = tuple(
        (key, value)
        for key, value in (
            (VARIANT_HEADER, getattr(error, "variant", None)),
            (REQUEST_ID_HEADER, getattr(error, "request_id", None)),
        )
        if value
    )
    await context.abort(grpc_code(error), error.one_line(), trailing_metadata=trailing)


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        inner_stream = handler.stream_stream

        async def streaming(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                async for response in inner_stream(requests, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return grpc.stream_stream_rpc_method_handler(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # the service has no unary-stream or stream-unary methods


def _with_variant(exc: TritiumError, decision: Decision | None, request_id: str = "") -> TritiumError:
    """Remember what the trailing metadata of the error status says (read by ErrorInterceptor)."""
    if decision is not None:
        exc.variant = decision.variant  # type: ignore[attr-defined]
    if request_id:
        exc.request_id = request_id  # type: ignore[attr-defined]
    return exc


def admit_tensors(request: service_pb2.ModelInferRequest, limit: int) -> int:
    """Check each input's shape against what the request carries; the bytes it holds in raw contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise UserInputError(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw input contents",
            hint="send one raw_input_contents entry per input, in order",
        )
    for index, tensor in enumerate(request.inputs):
        check_tensor(tensor.name, tensor.datatype, tensor.shape, len(raw[index]) if raw else None, limit)
    return sum(len(r) for r in raw)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.timeout = gateway.settings.upstream_timeout_s

    async def _call(
        self, method, request, decision: Decision, kind: TritonCall = TritonCall.CONTROL, what=None
    ):  # type: ignore[no-untyped-def]
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise from_triton_grpc(error, decision, self.gateway.upstream.grpc_url, kind, what) from None

    async def ModelInfer(self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext):
        gateway = self.gateway
        call = Call(gateway, request.model_name, "grpc")
        held = 0
        IN_FLIGHT.inc()
        try:
            metadata = _metadata(context)
            ids = gateway.request_ids
            call.request_id = ids.valid(metadata.get(REQUEST_ID_HEADER)) or ids.new()
            gateway.authorize(metadata)
            gateway.admit(request.model_name, request.model_version)
            size = admit_tensors(request, gateway.settings.max_payload_bytes)
            gateway.budget.reserve(size)  # grpc has the message in memory already: hold it in the budget
            held = size
            call.decision = decision = gateway.decide(
                request.model_name,
                request.model_version,
                metadata.get(gateway.sticky_header(request.model_name)),
            )
            public = request.model_name
            request.model_name = decision.model
            request.model_version = decision.version
            upstream_started = time.perf_counter()
            try:
                response = await gateway.upstream.stub.ModelInfer(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                if triton_answered(error):
                    call.upstream_s = time.perf_counter() - upstream_started
                raise from_triton_grpc(error, decision, gateway.upstream.grpc_url) from None
            call.upstream_s = time.perf_counter() - upstream_started
            shadow = gateway.shadow_for(public)
            if shadow is not None:  # only requests the primary answered, like REST
                self._mirror(shadow, request, size, response)
            response.parameters[VARIANT_PARAMETER].string_param = decision.variant
            context.set_trailing_metadata(
                ((VARIANT_HEADER, decision.variant), (REQUEST_ID_HEADER, call.request_id))
            )
            return response
        except TritiumError as exc:
            call.error = exc
            raise _with_variant(exc, call.decision, call.request_id) from None
        except Exception as exc:
            call.error = internal_error(exc)
            raise _with_variant(call.error, call.decision, call.request_id) from None
        finally:
            gateway.budget.release(held)
            IN_FLIGHT.dec()
            call.finish()

    def _mirror(
        self,
        shadow: Decision,
        request: service_pb2.ModelInferRequest,
        size: int,
        primary: service_pb2.ModelInferResponse,
    ) -> None:
        """Send `request` again to the shadow target: re-targeted in place, no copy (the primary call is
        over and nothing reads the message after it); it is serialised in the shadow's own task and
        held in the byte budget until then (no room: the shadow copy is dropped). With `compare`, the
        two answers are scored there too, after the client has its answer."""
        request.model_name = shadow.model
        request.model_version = shadow.version
        stub, timeout, gateway = self.gateway.upstream.stub, self.timeout, self.gateway
        route = gateway.store.table.routes.get(shadow.public_model)
        compare = (
            route.shadow if route is not None and route.shadow is not None and route.shadow.compare else None
        )

        async def send() -> bool:
            answer = await stub.ModelInfer(request, timeout=timeout)
            if compare is not None:
                try:
                    scores = row_scores(
                        grpc_outputs(primary),
                        grpc_outputs(answer),
                        compare.compare,
                        compare.output,  # type: ignore[arg-type]
                    )
                except Undecodable:
                    scores = None
                gateway.record_agreement(shadow, scores)
            return True

        gateway.submit_shadow(shadow, send, size)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[service_pb2.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ):
        """Each request is routed on its way in and recorded when its first response comes back.

        Requests are matched to responses by id: the gateway sends `<n>:<client id>` to Triton and
        gives the client its own id back. A request refused on its way in (bad name, version or
        shape) ends the stream with its status, like a unary call.
        """
        gateway = self.gateway
        metadata = _metadata(context)
        gateway.authorize(metadata)
        pending: dict[str, tuple[Call, float]] = {}
        numbers = itertools.count()
        limit = gateway.settings.max_payload_bytes

        async def routed() -> AsyncIterator[service_pb2.ModelInferRequest]:
            async for request in request_iterator:
                call = Call(gateway, request.model_name, "grpc")
                try:
                    gateway.admit(request.model_name, request.model_version)
                    admit_tensors(request, limit)
                    call.decision = decision = gateway.decide(
                        request.model_name,
                        request.model_version,
                        metadata.get(gateway.sticky_header(request.model_name)),
                    )
                except TritiumError as exc:
                    call.error = exc
                    call.finish()
                    refused.append(exc)
                    return
                number = str(next(numbers))
                pending[number] = (call, time.perf_counter())
                request.id = f"{number}:{request.id}"
                request.model_name = decision.model
                request.model_version = decision.version
                yield request

        refused: list[TritiumError] = []
        try:
            async for response in gateway.upstream.stub.ModelStreamInfer(routed()):
                self._answer_streamed(response, pending)
                yield response
        except grpc.aio.AioRpcError as error:
            failure = from_triton_grpc(error, NO_DECISION, gateway.upstream.grpc_url)
            for call, _sent in pending.values():
                call.error = failure
                call.finish()
            raise failure from None
        if refused:
            raise refused[0]

    def _answer_streamed(
        self, response: service_pb2.ModelStreamInferResponse, pending: dict[str, tuple[Call, float]]
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
        call, sent = entry
        call.upstream_s = time.perf_counter() - sent
        assert call.decision is not None
        if response.error_message:
            call.error = from_triton_stream(response.error_message, call.decision)
        else:
            answer.parameters[VARIANT_PARAMETER].string_param = call.decision.variant
        call.finish()

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        ready, _ = await self.gateway.upstream.server_ready()
        return service_pb2.ServerReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context):
        return await self._call(self.gateway.upstream.stub.ServerMetadata, request, NO_DECISION)

    async def _model_call(self, method_name: str, request, context, rename):  # type: ignore[no-untyped-def]
        self.gateway.authorize(_metadata(context))
        decision = self.gateway.resolve(request.name, request.version)
        request.name = decision.model
        request.version = "" if rename is not None and decision.chosen_by_route else decision.version
        response = await self._call(getattr(self.gateway.upstream.stub, method_name), request, decision)
        if rename is not None and decision.model != decision.public_model:
            rename(response, decision.public_model)
        return response

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
        if request.name:  # empty: every model's statistics
            return await self._model_call("ModelStatistics", request, context, None)
        self.gateway.authorize(_metadata(context))
        return await self._call(self.gateway.upstream.stub.ModelStatistics, request, NO_DECISION)

    def _admin(self, context: grpc.aio.ServicerContext) -> dict[str, str]:
        metadata = _metadata(context)
        check_admin(presented_credential(metadata), self.gateway.admin_token)
        return metadata

    async def RepositoryIndex(self, request, context):
        self._admin(context)
        return await self._call(self.gateway.upstream.stub.RepositoryIndex, request, NO_DECISION)

    async def RepositoryModelLoad(self, request, context):
        metadata = self._admin(context)
        check_model_name(request.model_name)
        load = describe_load(request.parameters)
        refuse_overrides(load, allowed=self.gateway.settings.allow_model_overrides)
        await self._call(
            self.gateway.upstream.stub.RepositoryModelLoad,
            request,
            NO_DECISION,
            TritonCall.LOAD,
            what=f"model {request.model_name!r}",
        )
        await self.gateway.store.audit_only(
            request.model_name, "load", _actor(metadata, context), detail=load.detail
        )
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        metadata = self._admin(context)
        check_model_name(request.model_name)
        await self.gateway.require_in_repository(request.model_name)
        await self._call(self.gateway.upstream.stub.RepositoryModelUnload, request, NO_DECISION)
        await self.gateway.store.audit_only(request.model_name, "unload", _actor(metadata, context))
        return service_pb2.RepositoryModelUnloadResponse()

    async def _not_served(self, request, context):  # type: ignore[no-untyped-def]
        raise NotFoundError(
            "shared memory, tracing and logging settings are not served by the gateway",
            hint="the gateway and Triton do not share memory; send tensors in the request",
        )

    SystemSharedMemoryStatus = SystemSharedMemoryRegister = SystemSharedMemoryUnregister = _not_served
    CudaSharedMemoryStatus = CudaSharedMemoryRegister = CudaSharedMemoryUnregister = _not_served
    TraceSetting = LogSettings = _not_served


def add_to_server(server: grpc.aio.Server, gateway: Gateway) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(gateway), server)


__all__ = ["ErrorInterceptor", "InferenceServicer", "add_to_server"]

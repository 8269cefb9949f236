"""The resource of a process's telemetry: who sent it.

Every node must be told apart, whatever else the environment says: each agent
process is one ``service.instance.id``, with its ``host.name`` and ``process.pid``.
``host.name`` is the fully qualified name, as torch's agent and rendezvous write it
on their events (so that a record's ``host.name`` and its resource's agree), looked
up once per process. ``service.name`` is ``OTEL_SERVICE_NAME`` (or the one in
``OTEL_RESOURCE_ATTRIBUTES``), else ``torchelastic`` rather than the SDK's
``unknown_service:python3``.
"""

import os
import uuid
from typing import Any

from opentelemetry.sdk.resources import Resource

from torchelastic_otel import semconv
from torchelastic_otel.otel.settings import Settings

DEFAULT_SERVICE_NAME = "torchelastic"


def host_name() -> str:
    """This host's fully qualified name, as the events give it (cached per process)."""
    from torchelastic_otel import events

    return events._hostname()


def create(s: Settings) -> Resource:
    """The SDK's resource from the environment, with this process's identity on top."""
    env_resource = Resource.create({})
    attrs: dict[str, Any] = {
        semconv.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
        semconv.HOST_NAME: host_name(),
        semconv.PROCESS_PID: os.getpid(),
    }
    service = s.service_name
    current = str(env_resource.attributes.get(semconv.SERVICE_NAME, ""))
    if service is None and current.startswith("unknown_service"):
        service = DEFAULT_SERVICE_NAME
    if service is not None:
        attrs[semconv.SERVICE_NAME] = service
    attrs.update(s.resource_attributes)
    return env_resource.merge(Resource(attrs))

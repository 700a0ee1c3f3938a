"""Job APIs: long API calls run as jobs; a client that detached waits or looks later."""

from __future__ import annotations

from typing import Annotated

from zmn.api.message import ApiMessage, Doc, api


@api(resource="Job", verb="get", mutating=False)
class GetJob(ApiMessage, kw_only=True):
    """A job's state, progress, result or error, now."""

    uuid: Annotated[str, Doc("job UUID")]


@api(resource="Job", verb="wait", mutating=False)
class WaitJob(ApiMessage, kw_only=True):
    """Wait until a job has finished and return it; a Timeout error when it runs longer."""

    uuid: Annotated[str, Doc("job UUID")]
    timeout: Annotated[
        float | None, Doc("seconds to wait at most (default: until it finishes)")
    ] = None


@api(resource="Job", verb="cancel")
class CancelJob(ApiMessage, kw_only=True):
    """Ask a running job to stop: its flow stops before its next step and rolls back what it
    did, and the job ends Canceled (a job past its last step finishes as it would)."""

    uuid: Annotated[str, Doc("job UUID")]

"""``zcli job wait J...``: wait for several jobs, print them (or, with ``-q``, the UUIDs of
the resources they made) and exit with the worst status among them.

One job prints as ``WaitJob`` always printed it; several print as rows. A job that ended
Failed, Canceled or Interrupted is reported on stderr (``error: CODE: message (job J)``) and
its error's exit status counts; a job still running when ``timeout=`` (or ``--timeout``)
runs out exits 124 and names the command to follow it.
"""

from __future__ import annotations

from zcli.output import render
from zcli.parser import UsageError, parse_args
from zcli.progress import follow_hint
from zmn.api.errors import EXIT_OK, Timeout, ZmnError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from zcli.options import Options
    from zcli.runner import Runner


def created_uuid(inv: dict[str, Any]) -> str:
    """The resource a job made or acted on: recorded on the job, else in its result."""
    uuid = inv.get("resourceUuid")
    if not uuid:
        result = inv.get("result")
        found = result.get("inventory") if isinstance(result, dict) else None
        uuid = found.get("uuid") if isinstance(found, dict) else None
    return str(uuid or "")


def wait_jobs(runner: Runner, tokens: list[str], opts: Options) -> int:
    cat = runner._require_catalogue()
    api = cat.apis.get("WaitJob")
    if api is None:
        raise UsageError("the node has no WaitJob API", field="job")
    args, jobs = parse_args(api, tokens)
    if "uuid" in args:
        jobs.insert(0, str(args.pop("uuid")))
    if not jobs:
        raise UsageError("job wait takes one or more job UUIDs", field="uuid")
    if "timeout" not in args and opts.timeout:
        args["timeout"] = opts.timeout
    client = runner.connect()
    invs: list[dict[str, Any]] = []
    status = EXIT_OK
    for job in jobs:
        try:
            with runner._deadline(opts.timeout and opts.timeout + 5):
                inv = client.call("WaitJob", {**args, "uuid": job})["inventory"]
        except Timeout as exc:
            runner.close()
            exc.message += f"; {follow_hint(job)}"
            status = max(status, runner.report(exc))
            continue
        except ZmnError as exc:  # an unknown job: say so, wait for the others
            status = max(status, runner.report(exc))
            continue
        invs.append(inv)
        if inv.get("state") != "Succeeded" and isinstance(inv.get("error"), dict):
            error = ZmnError.from_wire(inv["error"])
            runner.err.write(f"error: {error.code}: {error.message} (job {inv['uuid']})\n")
            status = max(status, error.exit_status)
    if opts.quiet:
        for inv in invs:
            uuid = created_uuid(inv)
            if uuid:
                runner.out.write(uuid + "\n")
    elif invs:
        result: dict[str, Any] = {"inventory": invs[0]} if len(jobs) == 1 else {"inventories": invs}
        render(result, opts, cat.resource_of_type("Job"), runner.out, runner.err)
    runner.out.flush()
    return status

"""The API catalogue: every API, resource type, join, enum, error code and global config.

The CLI, shell completion, man pages and dashboard columns are derived from this document;
none of them lists fields by hand. Its hash is sent in the connection greeting so that clients
cache it and refetch only when it changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from zmn import __version__
from zmn.api.errors import KINDS
from zmn.api.message import params_of
from zmn.api.querylang import ALL_OPERATORS, OPERATOR_DOCS, QUERY_OPTIONS, TAG_FIELDS

if TYPE_CHECKING:
    from zmn.core.node import Node


def build_catalogue(node: Node) -> dict[str, Any]:
    apis = []
    for name in sorted(node.apis.apis):
        cls = node.apis.apis[name]
        spec = cls.__api__
        if spec.internal:
            continue
        doc = (cls.__doc__ or "").strip()
        apis.append(
            {
                "name": name,
                "service": spec.service,
                "resource": spec.resource,
                "verb": spec.verb,
                "summary": spec.summary,
                "doc": doc,
                "admin": spec.admin,
                "long": spec.long,
                "mutating": spec.mutating,
                "public": spec.public,
                "params": [p.to_dict() for p in params_of(cls)],
                **({"rows": spec.rows} if spec.rows else {}),
            }
        )
    errors: dict[str, str] = {}
    for service in node.services.values():
        errors.update(service.error_codes)
    state_machines = {}
    for service in node.services.values():
        for machine in getattr(service, "state_machines", []):
            state_machines[machine.resource] = {
                "states": machine.states,
                "transitions": machine.table(),
                "allowed": {op: sorted(states) for op, states in machine.allowed.items()},
            }
    return {
        "version": __version__,
        "apis": apis,
        "resources": [rt.describe() for rt in node.resources.types.values()],
        "query": {
            "operators": [{"op": op, "doc": OPERATOR_DOCS[op]} for op in ALL_OPERATORS],
            "options": list(QUERY_OPTIONS),
            "tagFields": list(TAG_FIELDS),
        },
        "errorKinds": {k: cls.exit_status for k, cls in KINDS.items()},
        "errorCodes": dict(sorted(errors.items())),
        "globalConfigs": [
            {
                "category": d.category,
                "name": d.name,
                "type": d.type,
                "default": d.render(d.default),
                "description": d.description,
                **({"choices": list(d.choices)} if d.choices else {}),
            }
            for d in node.global_config.defs.values()
        ],
        "tagPatterns": [
            {"pattern": p.pattern, "resource": p.resource, "doc": p.doc}
            for p in node.tag_patterns.patterns
        ],
        "stateMachines": state_machines,
        "services": sorted(node.services),
    }


def catalogue_hash(catalogue: dict[str, Any]) -> str:
    body = json.dumps(catalogue, sort_keys=True, default=str).encode()
    return hashlib.sha256(body).hexdigest()[:16]

from __future__ import annotations

from typing import Annotated

from zmn.api.message import CreateMessage, Doc, Ref, Secret, api


@api(resource="Host", verb="add", admin=True, long=True)
class AddKvmHost(CreateMessage, kw_only=True):
    """Add a KVM host: check SSH, deploy zagent from the playbook, connect, take its facts.

    The host's SSH key is pinned on first contact; a host that later shows another key is
    refused until the operator deals with it (nothing is run on it).
    """

    name: Annotated[str, Doc("host name")]
    managementIp: Annotated[
        str, Doc("IP address or host name the node reaches the host at (SSH and agent); unique")
    ]
    clusterUuid: Annotated[str, Doc("cluster UUID or name (hypervisorType=KVM)"), Ref("Cluster")]
    username: Annotated[str, Doc("SSH user: root, or a user with password-less sudo")] = "root"
    password: Annotated[str | None, Doc("SSH password (or give sshPrivateKey)"), Secret()] = None
    sshPrivateKey: Annotated[
        str | None, Doc("path, on the management node, of the SSH private key to log in with")
    ] = None
    sshPort: Annotated[int, Doc("SSH port")] = 22

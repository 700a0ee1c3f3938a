"""playbooks/files/host-packages: the apt and dnf recipes, run against stand-in package tools.

The script runs for real (``sh``) with ``PATH`` starting at a directory of fake ``dpkg-query``,
``rpm``, ``apt-get`` and ``dnf`` that record their arguments, and an os-release file of the
distribution under test, so the RHEL-family recipe is checked on this Debian machine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from zmn.services.kvm.service import DEFAULT_PLAYBOOK

SCRIPT = DEFAULT_PLAYBOOK.parent / "files" / "host-packages"

DEBIAN = "ID=debian\nVERSION_CODENAME=bookworm\n"
UBUNTU = "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n"
ROCKY = 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
FEDORA = "ID=fedora\nVERSION_ID=40\n"

FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0")" in
  dpkg-query) p=$(eval echo \\${$#}); grep -qx "$p" "$INSTALLED" && printf 'install ok installed' || exit 1 ;;
  rpm) grep -qx "$2" "$INSTALLED" || exit 1 ;;
esac
"""


def run(
    tmp_path: Path, os_release: str, installed: list[str], *args: str
) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("dpkg-query", "rpm", "apt-get", "dnf"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "os-release").write_text(os_release)
    (tmp_path / "installed").write_text("".join(f"{p}\n" for p in installed))
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "INSTALLED": str(tmp_path / "installed"),
        "ZAGENT_OS_RELEASE": str(tmp_path / "os-release"),
        "ZAGENT_APT_LIST": str(tmp_path / "mirror.list"),
    }
    proc = subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )
    lines = [
        ln for ln in calls.read_text().splitlines() if not ln.startswith(("dpkg-query", "rpm"))
    ]
    return proc.returncode, proc.stdout + proc.stderr, lines


APT_ALL = ("qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients dnsmasq-base nftables"
           " bridge-utils iproute2 python3 python3-venv python3-libvirt python3-yaml").split()  # fmt: skip
DNF_ALL = ("qemu-kvm qemu-img libvirt-daemon-kvm libvirt-client dnsmasq nftables iproute python3"
           " python3-libvirt python3-pyyaml").split()  # fmt: skip


def test_the_playbook_uploads_the_script_executable_and_runs_it() -> None:
    text = DEFAULT_PLAYBOOK.read_text()
    assert (
        'upload: {src: files/host-packages, dest: "{{ prefix }}/bin/host-packages", mode: "0755"}'
        in text
    )
    assert 'run: "{{ prefix }}/bin/host-packages {{ package_mirror }}"' in text


def test_debian_with_everything_installed_touches_no_package_manager(tmp_path: Path) -> None:
    code, out, calls = run(tmp_path, DEBIAN, APT_ALL)
    assert (code, calls) == (0, []) and "ok: nothing missing" in out


def test_debian_installs_only_what_is_missing_with_apt(tmp_path: Path) -> None:
    have = [p for p in APT_ALL if p not in ("python3-libvirt", "dnsmasq-base")]
    code, out, calls = run(tmp_path, DEBIAN, have)
    assert code == 0, out
    opts = "-o Dpkg::Options::=--force-confold"
    assert calls == [
        f"apt-get {opts} update -qq",
        f"apt-get {opts} install -y -qq --no-install-recommends dnsmasq-base python3-libvirt",
    ]
    assert "installed: dnsmasq-base python3-libvirt" in out
    assert not (tmp_path / "mirror.list").exists()  # no mirror: the host's own sources


@pytest.mark.parametrize(("release", "suite", "comps"), [(DEBIAN, "bookworm", "main"),
                                                         (UBUNTU, "noble", "main universe")])  # fmt: skip
def test_an_apt_mirror_is_the_only_source(
    tmp_path: Path, release: str, suite: str, comps: str
) -> None:
    code, out, calls = run(tmp_path, release, [], "http://mirror.lan/debian")
    assert code == 0, out
    listing = str(tmp_path / "mirror.list")
    assert (tmp_path / "mirror.list").read_text() == (
        f"deb http://mirror.lan/debian {suite} {comps}\n"
        f"deb http://mirror.lan/debian {suite}-updates {comps}\n"
    )
    for call in calls:
        assert f"-o Dir::Etc::sourcelist={listing} -o Dir::Etc::sourceparts=-" in call
    assert calls[1].endswith("--no-install-recommends " + " ".join(APT_ALL))


@pytest.mark.parametrize("release", [ROCKY, FEDORA])
def test_the_rhel_family_installs_with_dnf(tmp_path: Path, release: str) -> None:
    code, out, calls = run(tmp_path, release, ["python3", "iproute"])
    assert code == 0, out
    wanted = [p for p in DNF_ALL if p not in ("python3", "iproute")]
    assert calls == ["dnf install -y -q " + " ".join(wanted)]
    code, out, calls = run(tmp_path, release, DNF_ALL)
    assert (code, calls) == (0, []) and "nothing missing" in out


def test_a_dnf_mirror_replaces_the_configured_repositories(tmp_path: Path) -> None:
    code, out, calls = run(
        tmp_path, ROCKY, DNF_ALL[:-1], "https://mirror.lan/rocky/9/AppStream/x86_64/os"
    )
    assert code == 0, out
    assert calls == [
        "dnf --disablerepo=* --repofrompath=zstack-mirror,https://mirror.lan/rocky/9/AppStream/x86_64/os"
        " --enablerepo=zstack-mirror install -y -q python3-pyyaml"
    ]


def test_an_unknown_distribution_is_refused_naming_what_to_install(tmp_path: Path) -> None:
    code, out, calls = run(tmp_path, "ID=arch\n", [])
    assert code == 1 and calls == []
    assert "unsupported distribution 'arch'" in out and "libvirt" in out

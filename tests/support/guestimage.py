"""A small bootable guest disk (qcow2) built from Debian packages, cached by content.

Used by the e2e tests, ``make demo-kvm`` and the benchmarks; the management node never
imports it. Only Debian packages are downloaded (``apt-get download``, through
:func:`tests.support.guest.fetch_debs`), unpacked with ``dpkg-deb -x`` and never installed.

The disk (MBR, 256 MiB virtual):

- partition 1, FAT (``ZBOOT``): syslinux (installed by its mtools installer, no mount),
  Debian's cloud kernel and an initrd (busybox and the virtio, IDE/CD-ROM and isofs modules)
  that mounts the root file system by label and switches to it;
- partition 2, ext4 (``zroot``, written by ``mke2fs -d``, no mount): busybox userland, dropbear
  with its libraries, ``/etc/inittab`` with a getty on ``ttyS0`` (root logs in on the console
  with no password: a test image), ``acpid`` for a clean ACPI shutdown, and
  ``/etc/zguest/firstboot`` which reads a NoCloud seed (a CD-ROM labelled ``cidata``) as
  cloud-init does: ``meta-data`` (``instance-id``, ``local-hostname``), ``user-data``
  (``#cloud-config`` with ``hostname``, ``ssh_authorized_keys`` and ``runcmd``, or a ``#!``
  script) and ``network-config`` v2 (a static address for the NIC with the given MAC); a NIC
  without static configuration takes a DHCP lease. Per-instance steps (keys, runcmd, script)
  run again when the seed's ``instance-id`` changes.

The console prints ``ZGUEST-SEED <instance-id> <hostname>`` after reading a seed and
``ZGUEST-READY`` before the login prompt. :func:`build` returns the cached image and builds
it at most once per content key, under a file lock, so parallel pytest-xdist workers share
one build. ``python -m tests.support.guestimage`` builds it and prints its path.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from tests.support import guest as _guest
from tests.support.guest import _cpio_newc, _run, fetch_debs

CACHE = _guest.CACHE
PACKAGES = (
    "linux-image-cloud-amd64", "busybox-static", "dropbear-bin", "libtomcrypt1",
    "libtommath1", "libgmp10", "zlib1g", "libcrypt1", "libc6", "syslinux", "syslinux-common", "mtools",
)  # fmt: skip
# Loaded by the initrd (with their dependencies): root disk on virtio, virtio-scsi or IDE,
# CD-ROMs on IDE (the seed) or virtio-scsi, virtio NICs, ACPI power button for acpid.
MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "ata_piix", "sd_mod",
           "sr_mod", "isofs", "button", "evdev")  # fmt: skip
SECTOR = 512
BOOT_START, BOOT_SECTORS = 2048, 64 * 2048  # 1 MiB in, 64 MiB
DISK_SIZE = 256 * 1024 * 1024
ROOT_LABEL = "zroot"
FILES = Path(__file__).with_name("guestfiles")


def _tree(cache: Path, debs: list[Path]) -> tuple[Path, str]:
    tree = cache / "image-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for deb in debs:
        _run("dpkg-deb", "-x", str(deb), str(tree))
    kernel = sorted(glob.glob(str(tree / "boot" / "vmlinuz-*")))[-1]
    return tree, Path(kernel).name.removeprefix("vmlinuz-")


def _module_order(moddir: Path) -> list[Path]:
    """Module files for :data:`MODULES` with dependencies first (``depends=`` in .modinfo)."""
    files = {p.name.removesuffix(".ko"): p for p in moddir.rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str) -> None:
        path = files.get(name) or files.get(name.replace("_", "-"))
        if path is None or path in order:
            return
        for field in path.read_bytes().split(b"\0"):
            if field.startswith(b"depends="):
                for dep in filter(None, field[8:].decode().split(",")):
                    visit(dep)
        order.append(path)

    for m in MODULES:
        visit(m)
    return order


def _busybox_links(root: Path, busybox: Path) -> None:
    applets = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = root / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def _initrd(tree: Path, version: str, out: Path, work: Path) -> None:
    rd = work / "initrd"
    for d in ("bin", "proc", "sys", "dev", "lib", "newroot"):
        (rd / d).mkdir(parents=True)
    shutil.copy(tree / "bin" / "busybox", rd / "bin" / "busybox")
    names = []
    for path in _module_order(tree / "lib" / "modules" / version):
        shutil.copy(path, rd / "lib" / path.name)
        names.append(path.name)
    init = (FILES / "initrd-init").read_text().replace("@MODULES@", " ".join(names))
    (rd / "init").write_text(init.replace("@ROOT_LABEL@", ROOT_LABEL))
    for p in (rd / "init", rd / "bin" / "busybox"):
        p.chmod(0o755)
    out.write_bytes(_cpio_newc(rd))


def _rootfs(tree: Path, root: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "mnt",
              "root/.ssh", "etc/dropbear", "var/lib/zguest", "var/log", "lib64"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(tree / "bin" / "busybox", root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    _busybox_links(root, tree / "bin" / "busybox")
    for prog in ("usr/sbin/dropbear", "usr/bin/dropbearkey"):
        shutil.copy(tree / prog, root / prog)
    libdir = root / "lib" / "x86_64-linux-gnu"
    libdir.mkdir(parents=True, exist_ok=True)
    for lib in glob.glob(str(tree / "lib" / "x86_64-linux-gnu" / "*.so*")) + glob.glob(
        str(tree / "usr" / "lib" / "x86_64-linux-gnu" / "*.so*")
    ):
        shutil.copy(lib, libdir / Path(lib).name, follow_symlinks=True)
    shutil.copy(tree / "lib64" / "ld-linux-x86-64.so.2", root / "lib64", follow_symlinks=True)
    for src in sorted((FILES / "rootfs").rglob("*")):
        dst = root / src.relative_to(FILES / "rootfs")
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            dst.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
    (root / "root").chmod(0o700)
    (root / "root" / ".ssh").chmod(0o700)
    (root / "tmp").chmod(0o1777)


def _boot_partition(tree: Path, version: str, initrd: Path, out: Path) -> None:
    env = dict(os.environ, PATH=f"{tree / 'usr' / 'bin'}:{os.environ.get('PATH', '')}",
               MTOOLS_SKIP_CHECK="1")  # fmt: skip
    with out.open("wb") as f:
        f.truncate(BOOT_SECTORS * SECTOR)

    def run(*argv: str) -> None:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr}")

    mtools = str(tree / "usr" / "bin" / "mtools")
    run(mtools, "-c", "mformat", "-i", str(out), "-v", "ZBOOT", "-H", str(BOOT_START),
        "-T", str(BOOT_SECTORS), "-h", "64", "-s", "32", "::")  # fmt: skip
    run(str(tree / "usr" / "bin" / "syslinux"), "--install", str(out))
    cfg = out.with_name("syslinux.cfg")
    cfg.write_text((FILES / "syslinux.cfg").read_text().replace("@ROOT_LABEL@", ROOT_LABEL))
    kernel = tree / "boot" / f"vmlinuz-{version}"
    for src, name in ((cfg, "syslinux.cfg"), (kernel, "vmlinuz"), (initrd, "initrd.gz")):
        run(mtools, "-c", "mcopy", "-i", str(out), str(src), f"::{name}")


def _mbr(bootcode: bytes, parts: list[tuple[int, int, int, bool]]) -> bytes:
    """Boot code plus a partition table of (type, start LBA, sectors, bootable) entries."""
    table = b""
    for ptype, start, count, boot in parts:
        chs = b"\xfe\xff\xff"  # LBA only
        table += struct.pack("<B3sB3sII", 0x80 if boot else 0, chs, ptype, chs, start, count)
    table = table.ljust(64, b"\0")
    return bootcode[:440].ljust(446, b"\0") + table + b"\x55\xaa"


def _assemble(tree: Path, boot: Path, root: Path, raw: Path) -> None:
    root_start = BOOT_START + BOOT_SECTORS
    root_sectors = DISK_SIZE // SECTOR - root_start
    _run("mke2fs", "-q", "-t", "ext4", "-L", ROOT_LABEL, "-d", str(root), "-F", str(raw) + ".root",
         f"{root_sectors // 2}k")  # fmt: skip
    bootcode = (tree / "usr" / "lib" / "syslinux" / "mbr" / "mbr.bin").read_bytes()
    with raw.open("wb") as f:
        f.truncate(DISK_SIZE)
        f.write(_mbr(bootcode, [(0x0E, BOOT_START, BOOT_SECTORS, True),
                                (0x83, root_start, root_sectors, False)]))  # fmt: skip
        f.seek(BOOT_START * SECTOR)
        f.write(boot.read_bytes())
        f.seek(root_start * SECTOR)
        with open(str(raw) + ".root", "rb") as r:
            shutil.copyfileobj(r, f, 1 << 20)
    os.unlink(str(raw) + ".root")


def content_key(debs: list[Path]) -> str:
    """Hash of this builder, its guest files and the package versions: a new one rebuilds."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(Path(_guest.__file__).read_bytes())
    for f in sorted(FILES.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(FILES)).encode() + b"\0" + f.read_bytes())
    for deb in debs:
        h.update(deb.name.encode())
    return h.hexdigest()[:16]


def build(cache: Path = CACHE) -> Path:
    """The guest image (qcow2) in ``cache``; built once per content key, under a file lock."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "guestimage.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        debs = fetch_debs(cache, PACKAGES)
        image = cache / f"zguest-{content_key(debs)}.qcow2"
        if image.exists():
            return image
        tree, version = _tree(cache, debs)
        work = cache / "image-work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            _initrd(tree, version, work / "initrd.gz", work)
            _rootfs(tree, work / "root")
            _boot_partition(tree, version, work / "initrd.gz", work / "boot.fat")
            _assemble(tree, work / "boot.fat", work / "root", work / "disk.raw")
            tmp = image.with_suffix(".tmp")
            _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "disk.raw"),
                 str(tmp))  # fmt: skip
            tmp.rename(image)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(tree, ignore_errors=True)
        return image


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE))

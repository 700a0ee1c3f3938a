"""Run by Debian's ``/usr/bin/python3`` with Debian's cloud-init on ``PYTHONPATH`` (see
:mod:`tests.support.debian_cloudinit`): cloud-init's own NoCloud datasource reads a seed ISO.

    python3 cloudinit_reader.py SEED.iso FILES_DIR WORKDIR   -> JSON on stdout

Device discovery is cloud-init's (``find_devs_with`` criteria ``TYPE=iso9660`` and
``LABEL=cidata``), answered by the real ``blkid`` probing the ISO file instead of scanning
the machine's block devices. Mounting is the one step replaced: this machine's kernel has no
iso9660 driver, so ``mount_cb`` hands cloud-init FILES_DIR, the ISO's files as the caller
extracted them (the e2e boot checks the ISO file system itself, in a guest kernel); from
there cloud-init reads and parses the seed as it would in a guest. Not imported by the test
suite (it runs under another interpreter).
"""

import json
import logging
import os
import subprocess
import sys

from cloudinit import distros, helpers, util
from cloudinit.sources import DataSourceNoCloud


def main() -> None:
    if os.environ.get("ZMN_CLOUDINIT_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    iso, files, work = sys.argv[1], sys.argv[2], sys.argv[3]

    def find_devs_with(criteria=None, oformat="device", tag=None, no_cache=False, path=None):
        probe = subprocess.run(["blkid", "-o", "device", "-t", criteria, iso],
                               capture_output=True, text=True, check=False)  # fmt: skip
        return [iso] if probe.stdout.strip() == iso else []

    def mount_cb(device, callback, data=None, *args, **kwargs):
        assert device == iso, device
        return callback(files, data)

    util.find_devs_with = find_devs_with
    util.mount_cb = mount_cb
    paths = helpers.Paths({"cloud_dir": f"{work}/cloud", "run_dir": f"{work}/run"})
    distro = distros.fetch("debian")("debian", {}, paths)
    ds = DataSourceNoCloud.DataSourceNoCloud({"datasource_list": ["NoCloud"]}, distro, paths)
    found = ds.get_data()
    if not found:
        print(json.dumps({"found": False}))
        return
    print(
        json.dumps(
            {
                "found": found,
                "seed": ds.seed,
                "metadata": ds.metadata,
                "userdata_raw": (ds.userdata_raw or b"").decode()
                if isinstance(ds.userdata_raw, bytes)
                else ds.userdata_raw,
                "network_config": ds.network_config,
                "public_keys": ds.get_public_ssh_keys(),
                "instance_id": ds.get_instance_id(),
                "hostname": ds.get_hostname().hostname,
            }
        )
    )


main()

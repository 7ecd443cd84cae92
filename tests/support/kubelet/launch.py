"""The container's start, run by the node agent in the pod's network namespace and a mount
namespace of the container's own (``ip netns exec … unshare --mount``): what a container runtime
does between creating the sandbox and the process.

1. Bind the volumes at their mount paths (``subPath`` within them), read-only where the mount
   says, and the termination message file at its path.
2. Make the image's programs reachable for the container's user, as the image's own files
   would be: the interpreter, the virtual environment and this checkout's package. Where a
   folder above them is closed to others (pyenv under ``/root``) a tmpfs is laid over it, and
   where a tmpfs or a volume covers them (an emptyDir on ``/tmp`` when the checkout is under
   ``/tmp``) they are bound back at their paths, read-only. The folders made for that show in
   the volume.
3. Make the root filesystem read-only when ``readOnlyRootFilesystem`` asks.
4. Drop to the container's user and group, with no supplementary groups.
5. Exec the container's process with its environment, in its working directory.

It runs as a plain script (the container's PATH need not import this package), reading its
instructions from the JSON file named by its one argument.
"""

import json
import os
import subprocess
import sys


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(f"mount {' '.join(args)}: {done.stderr}")
        sys.exit(128)


def _make(target: str, like: str) -> None:
    """A mount point of the kind its source is: a folder, or an empty file."""
    if os.path.isdir(like):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def _closed_ancestor(path: str) -> str | None:
    """The highest folder above ``path`` that others cannot enter, if any."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    staging = spec["staging"]
    # Everything is bound under the staging folder first, then from there: a later mount (an
    # emptyDir on /tmp) must not hide the source of another, nor the image's programs.
    programs = []
    for i, path in enumerate(spec["imagePaths"]):
        stage = os.path.join(staging, f"image-{i}")
        os.makedirs(stage, exist_ok=True)
        _mount("--bind", path, stage)
        programs.append((path, stage))
    staged = []
    for i, mount in enumerate(spec["mounts"]):
        stage = os.path.join(staging, str(i))
        _make(stage, mount["source"])
        _mount("--bind", mount["source"], stage)
        staged.append((stage, mount))
    # Folders above the programs that others cannot enter (pyenv under /root): a tmpfs.
    closed = sorted({c for p, _ in programs if (c := _closed_ancestor(p)) is not None})
    for folder in closed:
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", folder)
    for stage, mount in sorted(staged, key=lambda m: m[1]["target"].count("/")):
        _make(mount["target"], stage)
        _mount("--bind", stage, mount["target"])
        if mount["readOnly"]:
            _mount("-o", "remount,bind,ro", mount["target"])
    # The programs back, read-only, where a tmpfs or a volume (an emptyDir on /tmp, when this
    # checkout lives under /tmp) covers them, as the image's own files would be there.
    covers = [*closed, *(m["target"] for _, m in staged)]
    for path, stage in programs:
        if any(_under(path, c) for c in covers):
            os.makedirs(path, exist_ok=True)
            _mount("--bind", stage, path)
            _mount("-o", "remount,bind,ro", path)
    if spec["readOnlyRootFilesystem"]:
        _mount("-o", "remount,bind,ro", "/")
    os.chdir(spec["workingDir"] or "/")
    if spec["gid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
    if spec["uid"] is not None:
        os.setuid(spec["uid"])
    try:
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as err:  # as runc reports it: the container cannot start
        sys.stderr.write(f'exec: "{spec["argv"][0]}": {err.strerror}\n')
        sys.exit(127)


if __name__ == "__main__":
    main()

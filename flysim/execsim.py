"""A tiny simulated shell for `POST .../exec`.

Each mounted volume is a dict of path -> content that persists with the
volume (and so survives machine replacement and simulator restarts with
--state-file). Paths outside any mount live in an ephemeral per-machine root
filesystem that is kept in memory only, like a real rootfs that is reset on
replacement.

Supported: `true`, `false`, `echo`, `cat`, `ls [-a] [-1] [-l]`, `test`/`[`
with `-e -f -d -s`, `mkdir [-p]`, `rm [-r] [-f]`, `touch`, `printenv [NAME]`,
and `sh -c '...'` scripts using `;`, `&&`, `||`, `>` and `>>`. Scripts the
image catalogue gives the machine's image (by absolute path) run their
scripted behaviour, also inside `sh -c` and with redirects. Anything else
exits 127 with "not found", like a shell would.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .images import ExecScript
from .state import App, Machine

_ROOTFS: dict[str, tuple[dict[str, str], set[str]]] = {}
_OPERATORS = {";", "&&", "||", ">", ">>"}


def split(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return [cmd]


@dataclass
class _Loc:
    files: dict[str, str]
    dirs: Any  # list (volume, persisted) or set (rootfs)
    rel: str  # path inside that filesystem, always absolute ("/..."), "/" for root


class _FS:
    def __init__(self, app: App, m: Machine) -> None:
        self.mounts: list[tuple[str, Any]] = []
        for mt in m.config.get("mounts") or []:
            vol = app.volumes.get(mt.get("volume", ""))
            if vol is not None:
                self.mounts.append((posixpath.normpath(mt["path"]), vol))
        self.mounts.sort(key=lambda x: len(x[0]), reverse=True)
        files, dirs = _ROOTFS.setdefault(m.id, ({}, {"/", "/tmp", "/etc", "/var", "/root", "/app", "/usr", "/bin"}))
        for path, _ in self.mounts:
            dirs.add(path)
        self.root = (files, dirs)

    def loc(self, path: str) -> _Loc:
        path = posixpath.normpath(path if path.startswith("/") else "/" + path)
        for mpath, vol in self.mounts:
            if path == mpath or path.startswith(mpath.rstrip("/") + "/"):
                rel = "/" + path[len(mpath):].lstrip("/")
                return _Loc(vol.files, vol.dirs, posixpath.normpath(rel))
        return _Loc(self.root[0], self.root[1], path)

    def is_dir(self, path: str) -> bool:
        lc = self.loc(path)
        if lc.rel == "/" or lc.rel in lc.dirs:
            return True
        prefix = lc.rel.rstrip("/") + "/"
        if any(k.startswith(prefix) for k in lc.files) or any(d.startswith(prefix) for d in lc.dirs):
            return True
        # A mount point inside this directory makes it exist too.
        full = posixpath.normpath(path)
        return any(mp.startswith(full.rstrip("/") + "/") for mp, _ in self.mounts)

    def is_file(self, path: str) -> bool:
        lc = self.loc(path)
        return lc.rel in lc.files

    def read(self, path: str) -> str | None:
        lc = self.loc(path)
        return lc.files.get(lc.rel)

    def write(self, path: str, content: str, append: bool = False) -> str | None:
        if self.is_dir(path):
            return f"sh: can't create {path}: Is a directory"
        parent = posixpath.dirname(posixpath.normpath(path)) or "/"
        if not self.is_dir(parent):
            return f"sh: can't create {path}: nonexistent directory"
        lc = self.loc(path)
        lc.files[lc.rel] = (lc.files.get(lc.rel, "") if append else "") + content
        return None

    def mkdir(self, path: str, parents: bool) -> str | None:
        if self.is_file(path):
            return f"mkdir: can't create directory '{path}': File exists"
        if self.is_dir(path):
            return None if parents else f"mkdir: can't create directory '{path}': File exists"
        parent = posixpath.dirname(posixpath.normpath(path)) or "/"
        if not self.is_dir(parent):
            if not parents:
                return f"mkdir: can't create directory '{path}': No such file or directory"
            err = self.mkdir(parent, True)
            if err:
                return err
        lc = self.loc(path)
        if isinstance(lc.dirs, set):
            lc.dirs.add(lc.rel)
        elif lc.rel not in lc.dirs:
            lc.dirs.append(lc.rel)
        return None

    def remove(self, path: str, recursive: bool, force: bool) -> str | None:
        lc = self.loc(path)
        if lc.rel in lc.files:
            del lc.files[lc.rel]
            return None
        if self.is_dir(path):
            if not recursive:
                return f"rm: '{path}' is a directory"
            if lc.rel == "/":
                return f"rm: refusing to remove '{path}'"
            prefix = lc.rel.rstrip("/") + "/"
            for k in [k for k in lc.files if k.startswith(prefix)]:
                del lc.files[k]
            keep = [d for d in lc.dirs if d != lc.rel and not d.startswith(prefix)]
            if isinstance(lc.dirs, set):
                lc.dirs.clear()
                lc.dirs.update(keep)
            else:
                lc.dirs[:] = keep
            return None
        return None if force else f"rm: can't remove '{path}': No such file or directory"

    def listdir(self, path: str) -> list[str]:
        lc = self.loc(path)
        prefix = lc.rel.rstrip("/") + "/"
        names: set[str] = set()
        for k in list(lc.files) + list(lc.dirs):
            if k.startswith(prefix) and k != lc.rel:
                names.add(k[len(prefix):].split("/", 1)[0])
        full = posixpath.normpath(path).rstrip("/") + "/"
        for mp, _ in self.mounts:
            if mp.startswith(full):
                names.add(mp[len(full):].split("/", 1)[0])
        return sorted(n for n in names if n)


class _Shell:
    def __init__(self, fs: _FS, env: dict[str, str], scripts: Mapping[str, ExecScript]) -> None:
        self.fs = fs
        self.env = env
        self.scripts = scripts
        self.out: list[str] = []
        self.err: list[str] = []

    def simple(self, argv: list[str], redirect: tuple[str, str] | None = None) -> int:
        if not argv:
            return 0
        out_before = len(self.out)
        code = self._dispatch(argv)
        if redirect:
            op, target = redirect
            text = "".join(self.out[out_before:])
            del self.out[out_before:]
            err = self.fs.write(target, text, append=(op == ">>"))
            if err:
                self.err.append(err + "\n")
                return 1
        return code

    def _dispatch(self, argv: list[str]) -> int:
        name, args = argv[0], argv[1:]
        fs = self.fs
        script = self.scripts.get(name)
        if script is not None:
            return self._script(name, script)
        if name == "true" or name == ":":
            return 0
        if name == "false":
            return 1
        if name == "echo":
            newline = True
            if args and args[0] == "-n":
                newline, args = False, args[1:]
            self.out.append(" ".join(args) + ("\n" if newline else ""))
            return 0
        if name == "printenv":
            if args:
                val = self.env.get(args[0])
                if val is None:
                    return 1
                self.out.append(val + "\n")
                return 0
            self.out.extend(f"{k}={v}\n" for k, v in sorted(self.env.items()))
            return 0
        if name == "cat":
            code = 0
            for p in args:
                content = fs.read(p)
                if content is None:
                    msg = "Is a directory" if fs.is_dir(p) else "No such file or directory"
                    self.err.append(f"cat: can't open '{p}': {msg}\n")
                    code = 1
                else:
                    self.out.append(content)
            return code
        if name == "ls":
            flags = [a for a in args if a.startswith("-")]
            paths = [a for a in args if not a.startswith("-")] or ["/"]
            long = any("l" in f for f in flags)
            code = 0
            for p in paths:
                if fs.is_file(p):
                    self.out.append(p + "\n")
                elif fs.is_dir(p):
                    for n in fs.listdir(p):
                        if long:
                            child = posixpath.join(p, n)
                            kind = "d" if fs.is_dir(child) else "-"
                            size = len((fs.read(child) or "").encode())
                            self.out.append(f"{kind}rw-r--r-- 1 root root {size} {n}\n")
                        else:
                            self.out.append(n + "\n")
                else:
                    self.err.append(f"ls: {p}: No such file or directory\n")
                    code = 1
            return code
        if name in ("test", "["):
            if name == "[":
                if not args or args[-1] != "]":
                    self.err.append("[: missing ]\n")
                    return 2
                args = args[:-1]
            negate = False
            if args and args[0] == "!":
                negate, args = True, args[1:]
            if len(args) == 1:  # `test STRING`: true when non-empty
                return 0 if bool(args[0]) != negate else 1
            if len(args) != 2:
                self.err.append(f"{name}: unsupported expression\n")
                return 2
            op, p = args
            if op == "-e":
                ok = fs.is_file(p) or fs.is_dir(p)
            elif op == "-f":
                ok = fs.is_file(p)
            elif op == "-d":
                ok = fs.is_dir(p)
            elif op == "-s":
                ok = bool(fs.read(p))
            else:
                self.err.append(f"test: unknown operator {op}\n")
                return 2
            return 0 if ok != negate else 1
        if name == "mkdir":
            parents = "-p" in args
            code = 0
            for p in [a for a in args if not a.startswith("-")]:
                err = fs.mkdir(p, parents)
                if err:
                    self.err.append(err + "\n")
                    code = 1
            return code
        if name == "rm":
            rm_flags = "".join(a[1:] for a in args if a.startswith("-"))
            code = 0
            for p in [a for a in args if not a.startswith("-")]:
                err = fs.remove(p, "r" in rm_flags or "R" in rm_flags, "f" in rm_flags)
                if err:
                    self.err.append(err + "\n")
                    code = 1
            return code
        if name == "touch":
            for p in args:
                if not fs.is_file(p):
                    err = fs.write(p, "")
                    if err:
                        self.err.append(err.replace("sh: can't create", "touch:") + "\n")
                        return 1
            return 0
        if name in ("sh", "bash", "/bin/sh", "/bin/bash"):
            if len(args) >= 2 and args[0] == "-c":
                return self.script(args[1])
            self.err.append(f"{name}: only -c is supported\n")
            return 2
        self.err.append(f"sh: {name}: not found\n")
        return 127

    def _script(self, path: str, script: ExecScript) -> int:
        """An image's scripted command. `requires_mount` fails it, as a mount
        check would, unless a volume is really mounted at that path."""
        need = script.requires_mount
        if need is not None and posixpath.normpath(need) not in {mp for mp, _ in self.fs.mounts}:
            self.err.append(f"mount.nfs: export {need} not available ({path}: no volume mounted at {need})\n")
            return 1
        self.out.append(script.stdout)
        self.err.append(script.stderr)
        return script.exit_code

    def script(self, text: str) -> int:
        lex = shlex.shlex(text, posix=True, punctuation_chars=";&|>")
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError as exc:
            self.err.append(f"sh: syntax error: {exc}\n")
            return 2
        # Split into (connector, argv, redirect) segments.
        code = 0
        connector = ";"
        argv: list[str] = []
        redirect: tuple[str, str] | None = None
        i = 0

        def run_segment() -> None:
            nonlocal code, argv, redirect
            if connector == "&&" and code != 0:
                pass
            elif connector == "||" and code == 0:
                pass
            else:
                code = self.simple(argv, redirect)
            argv, redirect = [], None

        while i < len(tokens):
            tok = tokens[i]
            if tok in (">", ">>"):
                if i + 1 >= len(tokens):
                    self.err.append("sh: syntax error: missing redirect target\n")
                    return 2
                redirect = (tok, tokens[i + 1])
                i += 2
                continue
            if tok in (";", "&&", "||"):
                run_segment()
                connector = tok
                i += 1
                continue
            argv.append(tok)
            i += 1
        if argv or redirect:
            run_segment()
        return code


def run(
    app: App, m: Machine, argv: list[str], stdin: str = "", scripts: Mapping[str, ExecScript] | None = None
) -> dict[str, Any]:
    sh = _Shell(_FS(app, m), dict(m.config.get("env") or {}), scripts or {})
    code = sh.simple(argv)
    return {"exit_code": code, "stdout": "".join(sh.out), "stderr": "".join(sh.err)}


def forget(machine_id: str) -> None:
    _ROOTFS.pop(machine_id, None)

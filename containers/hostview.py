"""What the agent sees of the host: the mount table of chroot host mode (docs/architecture.md §9.1).

Pure: the host's filesystem comes in as a `HostFacts` (what exists, what is a symlink), so the
table is computed and tested without touching the disk. In chroot host mode (the default) every
target is under /host and the command is chrooted there; with --agent-image the same table is
laid out at the image's root (`root=""`) and there is no chroot.

- read-only from the host: /usr, /opt and the /bin, /sbin, /lib* directories (on merged-/usr
  hosts these are symlinks, which the entrypoint recreates inside the root);
- read-only from /etc: an allowlist of what toolchains and package managers read (ETC_ALLOW:
  certificates, the loader, users and groups, time, alternatives, java, apt, pip, npm, git,
  maven...), ETC_SECRETS inside them masked, plus awf's own resolv.conf and hosts;
- read-only toolchain homes in $HOME (TOOLCHAINS: ~/.cargo, ~/.rustup, ~/.nvm, ~/.local,
  ~/.pyenv, ~/.sdkman...) and $RUNNER_TOOL_CACHE; the host's PATH directories (`path_dirs`,
  $PATH and $GITHUB_PATH's) that no mount shows already, when they are not credentials, system
  or awf's own paths;
- read-write: the workspace ($GITHUB_WORKSPACE, else the current directory), -v mounts, the
  engines' state (~/.copilot, ~/.claude, ~/.codex, ~/.gemini) and --share-home directories
  (`share_rw`), /tmp/gh-aw (its mcp-logs hidden), and a private /tmp and an empty $HOME made
  for the run;
- hidden: every entry of CREDENTIALS (one table: the agents', clouds', forges' and package
  managers' well-known credential files and directories) wherever a mounted directory holds it
  (`credential_paths`: below it as below a home, below it when it is one of the entry's parent
  directories, e.g. a -v of ~/.config, and in the caller's home when that lies below it): a
  file is covered by /dev/null (read-only), a directory by an empty read-only tmpfs; the other
  files next to it stay readable. A -v of an entry itself, or of a path inside a directory
  entry, is refused (`secret_store`), like the whole stores of SECRET_STORES.

/dev, /sys and a hidepid /proc are the entrypoint's (containers/agent/entry.py): Docker cannot
bind the container's own /dev, and the host's must never be seen.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from containers.agentenv import Volume
from containers.spec import Mount

SYSTEM_DIRS = ("usr", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# /etc, read-only: what language toolchains and package managers read, and nothing that holds a
# secret (ETC_SECRETS covers the few places inside these that may). One reason a line; a
# trailing * matches names in /etc that start so (java-17-openjdk, python3.11).
ETC_ALLOW = (
    # TLS trust: OpenSSL, GnuTLS, Java (ssl/certs/java/cacerts), the distributions' bundles
    "ssl", "ca-certificates", "ca-certificates.conf", "pki/ca-trust", "pki/tls/certs",
    "pki/tls/openssl.cnf", "pki/tls/cert.pem", "pki/java", "crypto-policies",
    # the loader, users and groups, time, names and services (libc reads these)
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group",
    "localtime", "timezone", "host.conf", "gai.conf", "services", "protocols", "locale.alias",
    "mime.types", "os-release", "lsb-release", "debian_version", "alpine-release",
    "redhat-release", "system-release",
    # /usr/bin/java, python3, editor... on Debian-likes resolve through here
    "alternatives",
    # Java: java.security, jvm.cfg, net.properties (the JDK's conf/ links here on Debian)
    "java", "java-*", "jvm",
    # Python: pip's global config (mirrors, index-url), Debian's sitecustomize
    "pip.conf", "xdg/pip", "python3", "python3.*",
    # Node and Ruby package managers' global config (registry mirrors)
    "npmrc", "yarnrc", "gemrc",
    # git's system config (safe.directory, url rewrites, http.sslCAInfo)
    "gitconfig",
    # apt and dpkg: sources, mirrors, proxies (apt-get download, apt-cache; auth.conf masked)
    "apt", "dpkg",
    # Maven (m2.conf, the global settings.xml: the Debian launcher needs them), Gradle, .NET,
    # conda: their system-wide config
    "maven", "mavenrc", "gradle", "dotnet", "conda",
    # fontconfig (headless JDKs, browsers, plotting)
    "fonts",
)
# Read-only toolchain homes in $HOME: installers that write them at install time, not at run
# time (the bin/ of each is usually on the host's PATH). Cache homes that tools must write as
# they run (~/.m2, ~/.gradle: Maven and Gradle fail on a read-only one) are not shared; a
# --share-home of them shares them read-write (their credential files still masked).
TOOLCHAINS = (".cargo", ".rustup", ".nvm", ".local", ".pyenv", ".sdkman", ".volta", ".bun",
              ".deno", ".dotnet", "go",
              # the parts shared before, for a host whose parent is not a directory (tests)
              ".cargo/bin", ".local/bin", ".local/lib", ".local/pipx")
# A PATH directory inside one of these is mounted with the whole toolchain (shims and proxies
# call into the rest of it by absolute path)
TOOLCHAIN_ROOTS = frozenset(t for t in TOOLCHAINS if "/" not in t) - {"go", ".local"}
# The engines' own state, shared read-write with the host (credential files inside masked)
ENGINE_HOMES = (".copilot", ".claude", ".codex", ".gemini")
# gh-aw's prompts, MCP config and safe-outputs: shared read-write; its MCP servers' logs hidden
GH_AW_DIR = "/tmp/gh-aw"
GH_AW_HIDDEN = ("/tmp/gh-aw/mcp-logs",)
# Never on the command's PATH, never mounted for it
PATH_NEVER_UNDER = ("/etc", "/proc", "/sys", "/dev", "/run", "/boot")


class Kind(StrEnum):
    FILE = "file"  # covered by /dev/null, read-only
    DIR = "dir"  # covered by an empty read-only tmpfs


@dataclass(frozen=True, slots=True)
class Credential:
    """One well-known credential, as a path relative to a home. Only this path is covered;
    the other files of its directory stay readable."""

    path: str
    kind: Kind
    owner: str  # whose it is, for the reader


def _f(path: str, owner: str) -> Credential:
    return Credential(path, Kind.FILE, owner)


def _d(path: str, owner: str) -> Credential:
    return Credential(path, Kind.DIR, owner)


# THE table of credentials (both backends use it; tests/unit/test_hostview.py has a test per
# entry, tests/e2e/test_hardening.py and test_credentials.py read them through real mounts).
CREDENTIALS: tuple[Credential, ...] = (
    # containers, registries and package managers
    _f(".docker/config.json", "Docker registry logins"),
    _f(".config/containers/auth.json", "Podman/Buildah registry logins"),
    _f(".npmrc", "npm tokens"),
    _f(".yarnrc.yml", "Yarn npmAuthToken"),
    _f(".pypirc", "PyPI upload tokens"),
    _f(".cargo/credentials", "crates.io token (old name)"),
    _f(".cargo/credentials.toml", "crates.io token"),
    _f(".m2/settings.xml", "Maven server passwords"),
    _f(".m2/settings-security.xml", "Maven master password"),
    _f(".gradle/gradle.properties", "Gradle repository and signing credentials"),
    _f(".gem/credentials", "RubyGems API key"),
    _f(".composer/auth.json", "Composer tokens"),
    _f(".config/composer/auth.json", "Composer tokens (XDG)"),
    _f(".nuget/NuGet/NuGet.Config", "NuGet feed credentials"),
    _f(".config/helm/repositories.yaml", "Helm repository passwords"),
    # git and forges
    _f(".netrc", "HTTP logins (git, curl)"),
    _f(".git-credentials", "git credential store"),
    _f(".config/git/credentials", "git credential store (XDG)"),
    _f(".config/gh/hosts.yml", "GitHub CLI token"),
    _f(".config/glab-cli/config.yml", "GitLab CLI token"),
    _f(".config/github-copilot/hosts.json", "GitHub Copilot token"),
    _f(".config/github-copilot/apps.json", "GitHub Copilot token"),
    _d(".config/hub", "hub token"),
    # ssh
    _f(".ssh/id_rsa", "SSH key"),
    _f(".ssh/id_ed25519", "SSH key"),
    _f(".ssh/id_ecdsa", "SSH key"),
    _f(".ssh/id_dsa", "SSH key"),
    _f(".ssh/id_ed25519_sk", "SSH key (security key handle)"),
    _f(".ssh/id_ecdsa_sk", "SSH key (security key handle)"),
    # AI agents
    _f(".claude/.credentials.json", "Claude Code OAuth tokens"),
    _f(".claude.json", "Claude Code account (may hold primaryApiKey)"),
    _f(".codex/auth.json", "Codex CLI tokens"),
    _f(".gemini/oauth_creds.json", "Gemini CLI OAuth tokens"),
    _f(".gemini/google_accounts.json", "Gemini CLI accounts"),
    _f(".gemini/access_tokens.json", "Gemini CLI tokens"),
    _f(".gemini/mcp-oauth-tokens.json", "Gemini CLI MCP OAuth tokens"),
    _f(".gemini/.env", "Gemini CLI API key"),
    _f(".huggingface/token", "Hugging Face token (old place)"),
    _f(".cache/huggingface/token", "Hugging Face token"),
    _d(".copilot/logs", "Copilot CLI logs (tokens in requests)"),
    _d(".cache/mcp-logs", "MCP server logs"),
    _d(".local/state/sandboxes", "sandbox state"),
    _d(".local/share/keyrings", "GNOME keyring (~/.local is shared read-only)"),
    _d(".local/share/python_keyring", "Python keyring's file backend"),
    # clouds
    _f(".aws/credentials", "AWS keys"),
    _f(".aws/config", "AWS profiles (may hold keys)"),
    _d(".aws/sso/cache", "AWS SSO tokens"),
    _d(".aws/cli/cache", "AWS CLI assumed-role credentials"),
    _f(".config/gcloud/credentials.db", "gcloud credentials"),
    _f(".config/gcloud/access_tokens.db", "gcloud access tokens"),
    _f(".config/gcloud/application_default_credentials.json", "Google ADC"),
    _d(".config/gcloud/legacy_credentials", "gcloud credentials (old format)"),
    _f(".azure/credentials", "Azure credentials"),
    _f(".azure/accessTokens.json", "Azure CLI tokens (old)"),
    _f(".azure/msal_token_cache.json", "Azure CLI tokens"),
    _f(".azure/msal_token_cache.bin", "Azure CLI tokens (encrypted cache)"),
    _f(".azure/msal_http_cache.bin", "Azure CLI HTTP cache"),
    _f(".azure/service_principal_entries.json", "Azure service principal secrets"),
    _f(".azure/service_principal_entries.bin", "Azure service principal secrets"),
    _f(".kube/config", "Kubernetes credentials"),
    _f(".terraform.d/credentials.tfrc.json", "Terraform Cloud token"),
    _f(".terraformrc", "Terraform CLI config (may hold tokens)"),
    _f(".config/doctl/config.yaml", "DigitalOcean token"),
    _f(".config/hcloud/cli.toml", "Hetzner Cloud token"),
    _f(".pulumi/credentials.json", "Pulumi token"),
    _f(".config/pulumi/credentials.json", "Pulumi token (XDG)"),
    _f(".fly/config.yml", "Fly.io token"),
    _f(".wrangler/config/default.toml", "Cloudflare Wrangler OAuth (old place)"),
    _f(".config/.wrangler/config/default.toml", "Cloudflare Wrangler OAuth"),
    _f(".config/configstore/firebase-tools.json", "Firebase CLI tokens"),
    _f(".local/share/com.vercel.cli/auth.json", "Vercel CLI token"),
    _f(".databrickscfg", "Databricks tokens"),
    _f(".config/rclone/rclone.conf", "rclone remotes"),
    _f(".boto", "gsutil/boto keys"),
    _f(".s3cfg", "s3cmd keys"),
    _d(".config/heroku", "Heroku token"),
    # secret managers and databases
    _f(".vault-token", "Vault token"),
    _d(".config/op", "1Password CLI"),
    _f(".pgpass", "PostgreSQL passwords"),
    _f(".my.cnf", "MySQL password"),
)
# Secrets that may sit inside ETC_ALLOW's directories (paths below /etc), covered likewise
ETC_SECRETS: tuple[Credential, ...] = (
    _d("ssl/private", "TLS private keys (Debian)"),
    _d("pki/tls/private", "TLS private keys (Red Hat)"),
    _f("apt/auth.conf", "apt repository logins"),
    _d("apt/auth.conf.d", "apt repository logins"),
    _f("maven/settings-security.xml", "Maven master password (system-wide)"),
)
CREDENTIAL_FILES = tuple(c.path for c in CREDENTIALS if c.kind is Kind.FILE)
CREDENTIAL_DIRS = tuple(c.path for c in CREDENTIALS if c.kind is Kind.DIR)
# Never mounted by -v at all: whole secret stores (docs/architecture.md §9.1)
SECRET_STORES = (".ssh", ".aws", ".docker", ".kube", ".gnupg", ".netrc", ".gitconfig",
                 ".git-credentials")
# A workspace here would hand the sandbox the host itself; /tmp and /var/tmp are every user's
# and program's (ssh-agent and other sockets, other runs' files), so they are not shared either
NOT_A_WORKSPACE = ("/", "/usr", "/etc", "/var", "/boot", "/opt", "/bin", "/sbin", "/lib",
                   "/lib64", "/home", "/tmp", "/var/tmp")
NOT_UNDER = ("/proc", "/sys", "/dev", "/run")


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The host's filesystem as the table needs it; `HostFacts.live()` reads the real one."""

    exists: Callable[[str], bool]
    is_dir: Callable[[str], bool]
    readlink: Callable[[str], str | None]  # a symlink's target, None if not a symlink
    listdir: Callable[[str], Sequence[str]] = lambda _path: ()  # names in a directory

    @staticmethod
    def live() -> HostFacts:
        import os

        def readlink(path: str) -> str | None:
            return os.readlink(path) if os.path.islink(path) else None

        def listdir(path: str) -> Sequence[str]:
            try:
                return sorted(os.listdir(path))
            except OSError:
                return ()

        return HostFacts(os.path.lexists, os.path.isdir, readlink, listdir)


@dataclass(frozen=True, slots=True)
class HostView:
    mounts: tuple[Mount, ...]
    tmpfs: tuple[tuple[str, str], ...]
    symlinks: tuple[tuple[str, str], ...]  # (path inside the root, link target)
    masked: tuple[str, ...]  # host paths covered, for the run's record
    path: tuple[str, ...] = ()  # the host's PATH directories the command sees, in order
    root: str = ""

    def sees(self, path: str) -> bool:
        """Whether host `path` is at the same path in the sandbox, from the host (not covered
        by a tmpfs or a mask). The caller checks that it exists."""
        path = posixpath.normpath(path)
        if not path.startswith("/"):
            return False
        inside = self.root + path if self.root else path
        best: tuple[int, str | None] = (-1, None)  # (depth of the target, its source or None)
        for m in self.mounts:
            if _under(inside, m.target) and len(m.target) > best[0]:
                best = (len(m.target), m.source if m.target == self.root + m.source or (
                    not self.root and m.target == m.source) else "")
        for target, _opts in self.tmpfs:
            if _under(inside, target) and len(target) >= best[0]:
                best = (len(target), None)
        source = best[1]
        if not source or source == "/dev/null":
            # a path through a recreated merged-/usr link (/bin/sh) is /usr's
            for link, target in self.symlinks:
                if _under(path, link) and not target.startswith("/"):
                    return self.sees("/" + target + path[len(link):])
            return False
        return True


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def usable_workspace(path: str) -> bool:
    path = posixpath.normpath(path)
    return path not in NOT_A_WORKSPACE and not any(
        path == bad or path.startswith(bad + "/") for bad in NOT_UNDER)


def _etc_names(facts: HostFacts) -> Iterator[str]:
    names = facts.listdir("/etc")
    for pattern in ETC_ALLOW:
        if pattern.endswith("*"):
            yield from (n for n in names if fnmatch.fnmatchcase(n, pattern))
        else:
            yield pattern


def engine_homes(home: str) -> tuple[str, ...]:
    """The engines' state directories in `home` (shared read-write when they exist)."""
    return tuple(posixpath.join(home, name) for name in ENGINE_HOMES)


def share_home_error(path: str, home: str, facts: HostFacts) -> str | None:
    """Why `path` (resolved) cannot be shared read-write with --share-home, or None."""
    path, home = posixpath.normpath(path), posixpath.normpath(home)
    if not path.startswith(home.rstrip("/") + "/"):
        return f"it is not a directory under your home {home}"
    if not facts.is_dir(path) or facts.readlink(path) is not None:
        return "it is not a directory (create it first; a symlink is not followed)"
    store = secret_store(path)
    if store is not None:
        return f"{store} holds credentials and is never shared"
    return None


def host_view(*, root: str, home: str, uid: int, gid: int, workspace: str | None,
              volumes: Sequence[Volume], resolv_conf: str, hosts: str, facts: HostFacts,
              tool_cache: str | None = None, path_dirs: Sequence[str] = (),
              share_rw: Sequence[str] = (), gh_aw: bool = False,
              private: Sequence[str] = ()) -> HostView:
    """The agent's mounts. `root` is "/host" (chroot host mode) or "" (an image's own root).

    `path_dirs`: the host's PATH directories (candidates, in order; chroot mode only): those
    that exist and are not credentials, system or awf-`private` paths are on `HostView.path`,
    mounted read-only when no mount shows them already. `share_rw`: directories in the home
    shared read-write (the engines' state, --share-home; checked by the caller). `gh_aw`:
    share GH_AW_DIR read-write, GH_AW_HIDDEN hidden."""
    mounts: list[Mount] = []
    tmpfs: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []  # (host dir, target) whose contents the agent sees
    masked: list[str] = []

    def at(path: str) -> str:
        return root + path if root else path

    if root:
        # the chroot's own root: a small tmpfs for the mountpoints, links and dirs, made
        # read-only by the entrypoint once it is laid out
        tmpfs.append((root, "rw,nosuid,nodev,size=1m,mode=0755"))
        for name in SYSTEM_DIRS:
            path = "/" + name
            target = facts.readlink(path)
            if target is not None:
                links.append((path, target))
            elif facts.is_dir(path):
                mounts.append(Mount(path, at(path)))
        for name in dict.fromkeys(_etc_names(facts)):
            path = "/etc/" + name
            if facts.exists(path):
                mounts.append(Mount(path, at(path)))
        for cred in ETC_SECRETS:
            path = "/etc/" + cred.path
            if not any(_under(path, m.source) for m in mounts):
                continue
            if cred.kind is Kind.FILE and facts.exists(path) and not facts.is_dir(path):
                mounts.append(Mount("/dev/null", at(path)))
            elif cred.kind is Kind.DIR and facts.is_dir(path):
                tmpfs.append((at(path), "ro,nosuid,nodev,noexec,size=4k,mode=0555"))
            else:
                continue
            masked.append(path)
    tmpfs.append((at("/tmp"), "rw,nosuid,nodev,size=1g,mode=1777"))
    mounts.append(Mount(resolv_conf, at("/etc/resolv.conf")))
    mounts.append(Mount(hosts, at("/etc/hosts")))
    ws = posixpath.normpath(workspace) if workspace else None
    home = posixpath.normpath(home)
    rw_dirs = [posixpath.normpath(d) for d in share_rw]
    len_system = len(mounts)
    if ws != home:
        tmpfs.append((at(home), f"rw,nosuid,nodev,size=1g,mode=0700,uid={uid},gid={gid}"))
        for rel in TOOLCHAINS:
            path = posixpath.join(home, rel)
            if (facts.is_dir(path) and path != ws and path not in rw_dirs
                    and not any(_under(path, m.source) for m in mounts[len_system:])):
                mounts.append(Mount(path, at(path)))
                shared.append((path, path))
        if tool_cache and facts.is_dir(tool_cache) and usable_workspace(tool_cache):
            mounts.append(Mount(tool_cache, at(tool_cache)))
            shared.append((tool_cache, tool_cache))
    taken_by_v = {posixpath.normpath(v.target) for v in volumes}  # a -v of it wins
    for path in dict.fromkeys(rw_dirs):
        if (path not in taken_by_v and facts.is_dir(path) and facts.readlink(path) is None
                and secret_store(path) is None and ws != home and not (ws and _under(path, ws))):
            mounts.append(Mount(path, at(path), read_only=False))
            shared.append((path, path))
    if (gh_aw and GH_AW_DIR not in taken_by_v and facts.is_dir(GH_AW_DIR)
            and facts.readlink(GH_AW_DIR) is None):
        mounts.append(Mount(GH_AW_DIR, at(GH_AW_DIR), read_only=False))
        shared.append((GH_AW_DIR, GH_AW_DIR))
        for hidden in GH_AW_HIDDEN:
            tmpfs.append((at(hidden), "ro,nosuid,nodev,noexec,size=4k,mode=0555"))
    if ws is not None:
        mounts.append(Mount(ws, at(ws), read_only=False))
        shared.append((ws, ws))
    for v in volumes:
        mounts.append(Mount(v.source, at(v.target), read_only=v.read_only))
        shared.append((v.source, v.target))
    path_seen: list[str] = []
    if root:
        probe = HostView(tuple(mounts), tuple(tmpfs), tuple(links), (), (), root)
        for raw in path_dirs:
            path = posixpath.normpath(raw) if raw.startswith("/") else ""
            if not path or path in path_seen or not facts.is_dir(path):
                continue
            if (secret_store(path) is not None or (path in NOT_A_WORKSPACE and not probe.sees(
                    path)) or any(_under(path, bad) for bad in PATH_NEVER_UNDER)
                    or any(_under(path, p) or _under(p, path) for p in private)
                    or _under(home, path)):
                continue
            if not probe.sees(path):
                # a toolchain's bin (another home's ~/.pyenv/shims, ~/.cargo/bin) needs the
                # rest of that toolchain: its root is mounted instead
                parts = path.split("/")
                whole = next(("/".join(parts[:i + 1]) for i, name in enumerate(parts)
                              if name in TOOLCHAIN_ROOTS and i > 1), path)
                if not facts.is_dir(whole) or secret_store(whole) is not None:
                    whole = path
                mounts.append(Mount(whole, at(whole)))
                shared.append((whole, whole))
                probe = HostView(tuple(mounts), tuple(tmpfs), tuple(links), (), (), root)
            path_seen.append(path)
    taken = {m.target for m in mounts} | {t for t, _ in tmpfs}
    for source, target in shared:
        for cred, path, inside in credential_paths(source, target, home):
            dest = at(inside)
            if dest in taken:
                continue
            if cred.kind is Kind.FILE and facts.exists(path) and not facts.is_dir(path):
                mounts.append(Mount("/dev/null", dest))
            elif cred.kind is Kind.DIR and facts.is_dir(path):
                tmpfs.append((dest, "ro,nosuid,nodev,noexec,size=4k,mode=0555"))
            else:
                continue
            taken.add(dest)
            masked.append(path)
    return HostView(tuple(mounts), tuple(tmpfs), tuple(links), tuple(masked),
                    tuple(path_seen), root)


# --ssl-bump (awf/bump.py): where the command finds the run's CA and the bundle (the host's store
# and the CA), and the distributions' store files the bundle covers
RUN_CA = "/run/awf/bump-ca.pem"
RUN_BUNDLE = "/run/awf/bump-ca-bundle.pem"
TRUST_STORES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def trust_mounts(view: HostView, *, cert: str, bundle: str, facts: HostFacts
                 ) -> tuple[Mount, ...]:
    """--ssl-bump: the run's CA (`cert`) at RUN_CA, the bundle at RUN_BUNDLE, and the bundle over
    each TRUST_STORES file the command sees of the host, at the path it leads to (Fedora's is a
    symlink), so a client reading the default store trusts the CA with no flag or variable.
    With an image's own root (`view.root` ""), the image's Debian path is covered."""
    out = [Mount(cert, view.root + RUN_CA), Mount(bundle, view.root + RUN_BUNDLE)]
    if not view.root:
        return (*out, Mount(bundle, TRUST_STORES[0]))
    for path in TRUST_STORES:
        real = _resolve(path, facts)
        if (real is not None and facts.exists(real) and not facts.is_dir(real)
                and view.sees(real) and view.root + real not in {m.target for m in out}):
            out.append(Mount(bundle, view.root + real))
    return tuple(out)


def _resolve(path: str, facts: HostFacts) -> str | None:
    """`path` with every symlink on the way followed (at most 40), as the host reads it."""
    todo = [p for p in path.split("/") if p]
    done = ""
    hops = 40
    while todo:
        here = f"{done}/{todo.pop(0)}"
        link = facts.readlink(here)
        if link is None:
            done = here
            continue
        hops -= 1
        if hops < 0:
            return None
        target = posixpath.normpath(link if link.startswith("/")
                                    else posixpath.join(done or "/", link))
        todo = [*(p for p in target.split("/") if p), *todo]
        done = ""
    return done or "/"


def credential_paths(source: str, target: str, home: str
                     ) -> Iterator[tuple[Credential, str, str]]:
    """(entry, host path, path in the sandbox) of every place a CREDENTIALS entry may sit in a
    directory mounted from `source` at `target`:

    - below `source` as below a home (a workspace that is the home, a copy of a home);
    - below `source` when `source` is one of the entry's own parent directories: a -v of
      ~/.config holds gh/hosts.yml, a -v of ~/.claude holds .credentials.json (matched by the
      directory names, wherever that directory lives);
    - in the caller's home, when the home lies below `source` (a -v of /home).

    A `source` that is itself an entry, or lies inside a directory entry, is refused before
    this (`secret_store`)."""
    src = posixpath.normpath(source)
    dst = posixpath.normpath(target)
    src_parts = src.split("/")
    home = posixpath.normpath(home)
    home_below = home.startswith(src.rstrip("/") + "/")
    for cred in CREDENTIALS:
        parts = cred.path.split("/")
        for k in range(len(parts)):  # k: how many of the entry's leading names `src` ends with
            if k and src_parts[-k:] != parts[:k]:
                continue
            rest = "/".join(parts[k:])
            yield cred, posixpath.join(src, rest), posixpath.join(dst, rest)
        if home_below:
            inside = posixpath.join(dst, home[len(src.rstrip("/")) + 1:], cred.path)
            yield cred, posixpath.join(home, cred.path), inside


def secret_store(path: str) -> str | None:
    """The secret store `path` is or lies in, or the CREDENTIALS entry it is or lies in (for
    -v's refusal), else None."""
    norm = posixpath.normpath(path)
    parts = norm.split("/")
    for name in SECRET_STORES:
        if name in parts:
            return name
    for cred in CREDENTIALS:
        if norm.endswith("/" + cred.path) or (
                cred.kind is Kind.DIR and f"/{cred.path}/" in norm + "/"):
            return cred.path
    return None

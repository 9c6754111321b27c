"""Upstream awf's config keys and flags, and what each becomes here (docs/config.md).

Upstream is `github/gh-aw-firewall` (its `docs/awf-config.schema.json` and `src/cli-options.ts`,
read at commit f550957). Every leaf key of its schema and every flag of its CLI has one row:

* MAPPED: our own key (an `awf run` flag's dest) takes the value;
* NOTED: accepted; it has no effect here, and one informational line says so;
* REFUSED: exit 2 with one line saying why and what to use: accepting it silently would weaken
  security (a boundary the user asked for would not hold) or mislead (a cap, a route or an
  endpoint the user relies on would not be there).

A NOTED or REFUSED value that asks for nothing (false, empty, or a row's `inert` values) is
accepted silently. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    MAPPED = "mapped"
    NOTED = "noted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Row:
    status: Status
    reason: str  # MAPPED: how; otherwise why, and what to use
    ours: str = ""  # MAPPED: the dest of our flag that takes the value
    kind: str = "str"  # MAPPED: str | list | csv | bool | not (a bool, inverted) | int
    flag: str = ""  # upstream's flag for it, if any
    inert: tuple[object, ...] = (False, None, "")  # values that ask for nothing
    empty_inert: bool = True  # an empty list or mapping asks for nothing
    silent: bool = False  # NOTED without a line (metadata)

    def asks_nothing(self, value: object) -> bool:
        if isinstance(value, (list, dict, tuple)) and not value:
            return self.empty_inert
        return any(type(value) is type(v) and value == v for v in self.inert)


def M(ours: str, kind: str = "str", flag: str = "", how: str = "") -> Row:
    return Row(Status.MAPPED, how or f"our {ours}", ours=ours, kind=kind, flag=flag)


def N(reason: str, flag: str = "", inert: tuple[object, ...] = (False, None, "")) -> Row:
    return Row(Status.NOTED, reason, flag=flag, inert=inert)


def R(reason: str, flag: str = "", inert: tuple[object, ...] = (False, None, ""),
      empty_inert: bool = True) -> Row:
    return Row(Status.REFUSED, reason, flag=flag, inert=inert, empty_inert=empty_inert)


# reasons shared by several rows
_IMAGES = ("no effect here: awf has no image registry; its images are always built locally and "
           "tagged by the hash of their inputs (awf images build)")
_CH = ("no effect here: awf has no Cloud Hypervisor runtime; the command runs in awf's own "
       "sandbox")
_CHROOT = "no effect here: awf has no chroot mode; the sandbox's host view is fixed"
_DIND = ("no effect here: awf has no ARC/DinD staging; run awf where the Docker daemon shares "
         "this host's filesystem")
_CACHE = "no effect here: an API-proxy cache/cost optimisation; requests are sent unchanged"
_LATER_API = ("not supported by awf's API proxy yet; requests would go to the default endpoint "
              "and path; remove it or use upstream awf for this provider setup")
_CAP = ("not enforced by awf's API proxy: the cap you set would not hold; remove it (bound the "
        "run with --agent-timeout) or use upstream awf")
_MODELS = ("not enforced by awf's API proxy: the model list you set would not hold; remove it "
           "or use upstream awf")
_AUTH = ("not supported: awf's API proxy does no OIDC credential exchange; give the provider's "
         "key in the environment (the sidecar holds it, the command never sees it)")
_ENCLAVE = ("not supported: awf has no private-repository enclaves; the executors and their "
            "information budgets would not exist")
_SESSION = ("no effect here: the command's session state stays in the sandbox (awf has no "
            "--session-state-dir; --share-home DIR shares a directory of your home read-write)")


SCHEMA: dict[str, Row] = {
    "$schema": Row(Status.NOTED, "editor metadata; ignored", silent=True),
    # network
    "network.allowDomains": M("allow_domains", "list", "--allow-domains"),
    "network.blockDomains": M("block_domains", "list", "--block-domains"),
    "network.dnsServers": M("dns_servers", "csv", "--dns-servers"),
    "network.upstreamProxy": M("upstream_proxy", "str", "--upstream-proxy"),
    "network.isolation": R("awf always isolates the command; it cannot be turned off",
                           "--network-isolation", inert=(True, None)),
    "network.topologyAttach": M("topology_attach", "list", "--topology-attach",
                                "our --topology-attach: the proxy joins each network"),
    # filesystem
    "filesystem.allowWrite": R("not supported yet: the write boundary would not hold; mount "
                               "host paths read-only with -v HOST:CONTAINER:ro instead",
                               empty_inert=False),
    # apiProxy
    "apiProxy.enabled": N("ignored (as upstream): the API proxy sidecar starts whenever a key "
                          "exists; to run without it use --no-api-proxy", inert=(True, None)),
    "apiProxy.enableTokenSteering": N(_CACHE, "--enable-token-steering"),
    "apiProxy.anthropicAutoCache": N(_CACHE, "--anthropic-auto-cache"),
    "apiProxy.anthropicCacheTailTtl": N(_CACHE, "--anthropic-cache-tail-ttl"),
    "apiProxy.maxEffectiveTokens": R(_CAP),
    "apiProxy.maxAiCredits": R(_CAP),
    "apiProxy.defaultAiCreditsPricing.input": R(_CAP),
    "apiProxy.defaultAiCreditsPricing.output": R(_CAP),
    "apiProxy.defaultAiCreditsPricing.cachedInput": R(_CAP),
    "apiProxy.defaultAiCreditsPricing.cacheWrite": R(_CAP),
    "apiProxy.providers": N(_CACHE + " (pricing catalogue)"),
    "apiProxy.modelMultipliers": R(_CAP, "--max-model-multiplier"),
    "apiProxy.defaultModelMultiplier": R(_CAP),
    "apiProxy.maxModelMultiplierCap": R(_CAP, "--max-model-multiplier-cap"),
    "apiProxy.maxTurns": R(_CAP),
    "apiProxy.maxRuns": R(_CAP),
    "apiProxy.maxPermissionDenied": R(_CAP, "--max-permission-denied"),
    "apiProxy.maxCacheMisses": R(_CAP, "--max-cache-misses"),
    "apiProxy.requestedModel": N("no effect here: awf does not pre-validate model names"),
    "apiProxy.modelFallback.enabled": N("no effect here: awf does not rewrite model names"),
    "apiProxy.modelFallback.strategy": N("no effect here: awf does not rewrite model names"),
    "apiProxy.modelFallback.excludeEngines": N("no effect here: awf does not rewrite model "
                                               "names"),
    "apiProxy.modelRouter.providerType": R(_LATER_API),
    "apiProxy.modelRouter.baseUrl": R(_LATER_API),
    "apiProxy.targets.openai.host": M("openai_api_target", flag="--openai-api-target"),
    "apiProxy.targets.openai.basePath": R(_LATER_API, "--openai-api-base-path"),
    "apiProxy.targets.openai.authHeader": R(_LATER_API, "--openai-api-auth-header"),
    "apiProxy.targets.openai.baseUrlEnv": R(_LATER_API, "--openai-base-url-env"),
    "apiProxy.targets.anthropic.host": M("anthropic_api_target", flag="--anthropic-api-target"),
    "apiProxy.targets.anthropic.basePath": R(_LATER_API, "--anthropic-api-base-path"),
    "apiProxy.targets.anthropic.authHeader": R(_LATER_API, "--anthropic-api-auth-header"),
    "apiProxy.targets.copilot.host": M("copilot_api_target", flag="--copilot-api-target"),
    "apiProxy.targets.copilot.extraHeaders": R(_LATER_API),
    "apiProxy.targets.copilot.extraBodyFields": R(_LATER_API),
    "apiProxy.targets.copilot.sessionId": R(_LATER_API),
    "apiProxy.targets.gemini.host": M("gemini_api_target", flag="--gemini-api-target"),
    "apiProxy.targets.gemini.basePath": R(_LATER_API, "--gemini-api-base-path"),
    "apiProxy.targets.gemini.authHeader": R(_LATER_API),
    "apiProxy.targets.vertex.host": R(_LATER_API, "--vertex-api-target"),
    "apiProxy.targets.vertex.basePath": R(_LATER_API, "--vertex-api-base-path"),
    "apiProxy.targets.vertex.authHeader": R(_LATER_API),
    "apiProxy.targets.antigravity.host": M("gemini_api_target", how="our gemini_api_target "
                                           "(as upstream, it wins over targets.gemini.host)"),
    "apiProxy.targets.antigravity.basePath": R(_LATER_API),
    "apiProxy.targets.antigravity.authHeader": R(_LATER_API),
    "apiProxy.models": N("no effect here: awf does not rewrite model names"),
    "apiProxy.allowedModels": R(_MODELS),
    "apiProxy.disallowedModels": R(_MODELS),
    **{f"apiProxy.auth.{k}": R(_AUTH) for k in (
        "type", "provider", "oidcAudience", "azureTenantId", "azureClientId", "azureScope",
        "azureCloud", "awsRoleArn", "awsRegion", "awsRoleSessionName",
        "gcpWorkloadIdentityProvider", "gcpServiceAccount", "gcpScope",
        "anthropicFederationRuleId", "anthropicOrganizationId", "anthropicServiceAccountId",
        "anthropicWorkspaceId", "anthropicTokenUrl")},
    "apiProxy.logging.debugTokens": N("no effect here: awf's API proxy logs usage in its own "
                                      "log (docs/config.md)"),
    "apiProxy.logging.tokenLogDir": N("no effect here: awf's API proxy logs usage in the run's "
                                      "logs directory"),
    "apiProxy.diagnostics.captureBlockedRequests": N("no effect here: awf's API proxy does not "
                                                     "capture request bodies"),
    "apiProxy.diagnostics.maxCapturedBytes": N("no effect here: awf's API proxy does not "
                                               "capture request bodies"),
    # security
    "security.legacySecurity": R("dropped on purpose: there is one isolated mode and no host "
                                 "iptables; remove it", "--legacy-security"),
    "security.securityMode": R("dropped on purpose: there is one isolated mode (strict); remove "
                               "it", "--security-mode", inert=(None, "", "strict")),
    "security.sslBump": M("ssl_bump", "bool", "--ssl-bump",
                          "our --ssl-bump: a CA made for the run, URL rules with --allow-urls"),
    "security.enableDlp": R("not supported: no DLP scanning of outbound requests, so the "
                            "protection you asked for would not hold", "--enable-dlp"),
    "security.enableHostAccess": M("enable_host_access", "bool", "--enable-host-access"),
    "security.allowHostPorts": M("allow_ports", "list", "--allow-host-ports",
                                 how="our allow_ports (dangerous ports still refused)"),
    "security.allowHostServicePorts": R("dropped on purpose: it bypassed the dangerous-port list; "
                                        "use --allow-host-ports or HOST:PORT entries in "
                                        "--allow-domains", "--allow-host-service-ports"),
    "security.difcProxy.host": R("not supported: no DIFC proxy, so gh traffic would not pass "
                                 "its checks; remove it or use upstream awf",
                                 "--difc-proxy-host"),
    "security.difcProxy.caCert": R("not supported: no DIFC proxy", "--difc-proxy-ca-cert"),
    # container
    "container.memoryLimit": M("memory_limit", flag="--memory-limit"),
    "container.pidsLimit": M("pids_limit", "int", "--pids-limit"),
    "container.agentTimeout": M("agent_timeout", "int", "--agent-timeout",
                                how="our agent_timeout (minutes)"),
    "container.enableDind": M("enable_docker", "bool", "--enable-dind",
                              how="our enable_docker: a filtered Docker API, not the raw socket"),
    "container.workDir": M("work_dir", flag="--work-dir"),
    "container.containerWorkDir": M("container_workdir", flag="--container-workdir"),
    **{f"container.images.{k}": N(_IMAGES) for k in (
        "squid", "agent", "apiProxy", "cliProxy", "buildTools", "dohProxy", "enclaveScript",
        "enclaveAgent", "enclaveMcpServer", "dindStaging")},
    "container.imageRegistry": N(_IMAGES, "--image-registry"),
    "container.imageTag": N(_IMAGES, "--image-tag"),
    "container.skipPull": N(_IMAGES, "--skip-pull"),
    "container.buildLocal": N(_IMAGES, "--build-local"),
    "container.agentImage": M("agent_image", flag="--agent-image",
                              how="our agent_image ('default' is awf-agent; other names are "
                                  "local images)"),
    "container.tty": M("tty", "bool", "--tty"),
    "container.dockerHost": M("docker_host", flag="--docker-host",
                              how="our docker_host (DOCKER_HOST for awf's Docker client)"),
    "container.dockerHostPathPrefix": R("not supported yet: bind mounts would name the wrong "
                                        "host paths; run awf where the Docker daemon shares "
                                        "this host's filesystem", "--docker-host-path-prefix"),
    "container.runnerToolCachePath": N(_CHROOT),
    "container.mounts": M("volumes", "list", "--mount"),
    "container.containerRuntime": R("not supported yet: the agent runs under runc with awf's "
                                    "seccomp profile; the stronger isolation you asked for "
                                    "would not hold", "--container-runtime"),
    # cloudHypervisor
    "cloudHypervisor.previewEnabled": N(_CH, "--cloud-hypervisor-preview"),
    "cloudHypervisor.cloudHypervisorBinary": N(_CH, "--cloud-hypervisor-binary"),
    "cloudHypervisor.kernelPath": N(_CH, "--cloud-hypervisor-kernel"),
    "cloudHypervisor.rootfsPath": N(_CH, "--cloud-hypervisor-rootfs"),
    "cloudHypervisor.supervisorPath": N(_CH, "--cloud-hypervisor-supervisor"),
    "cloudHypervisor.vcpuCount": N(_CH, "--cloud-hypervisor-vcpus"),
    "cloudHypervisor.memoryMib": N(_CH, "--cloud-hypervisor-memory-mib"),
    "cloudHypervisor.apiTimeoutMs": N(_CH, "--cloud-hypervisor-api-timeout-ms"),
    "cloudHypervisor.sha256.cloudHypervisor": N(_CH, "--cloud-hypervisor-binary-sha256"),
    "cloudHypervisor.sha256.virtiofsd": N(_CH, "--cloud-hypervisor-virtiofsd-sha256"),
    "cloudHypervisor.sha256.kernel": N(_CH, "--cloud-hypervisor-kernel-sha256"),
    "cloudHypervisor.sha256.rootfs": N(_CH, "--cloud-hypervisor-rootfs-sha256"),
    "cloudHypervisor.sha256.supervisor": N(_CH, "--cloud-hypervisor-supervisor-sha256"),
    # chroot, dind, runner
    "chroot.binariesSourcePath": N(_CHROOT),
    "chroot.identity.home": N(_CHROOT),
    "chroot.identity.user": N(_CHROOT),
    "chroot.identity.uid": N(_CHROOT),
    "chroot.identity.gid": N(_CHROOT),
    "dind.preStageDirs": N(_DIND),
    "dind.workDir": N(_DIND),
    "dind.stagingImage": N(_DIND),
    "dind.stageEngineBinary.path": N(_DIND),
    "dind.stageEngineBinary.targetPath": N(_DIND),
    "runner.topology": R("not supported: awf has no ARC/DinD split-filesystem mode; run awf "
                         "where the Docker daemon shares this host's filesystem",
                         inert=(None, "", "standard")),
    "runner.sysrootImage": N(_DIND),
    # environment, logging
    "environment.envFile": M("env_file", flag="--env-file"),
    "environment.envAll": M("env_all", "bool", "--env-all",
                            how="our env_all (tokens, keys and proxy variables never pass)"),
    "environment.excludeEnv": M("exclude_env", "list", "--exclude-env"),
    "logging.logLevel": M("log_level", flag="--log-level"),
    "logging.diagnosticLogs": M("diagnostics", "bool", "--diagnostic-logs"),
    "logging.auditDir": M("audit_dir", flag="--audit-dir"),
    "logging.proxyLogsDir": M("proxy_logs_dir", flag="--proxy-logs-dir"),
    "logging.sessionStateDir": N(_SESSION, "--session-state-dir"),
    # rateLimiting, platform
    "rateLimiting.enabled": M("no_rate_limit", "not", "--no-rate-limit",
                              "our no_rate_limit, inverted (false: no limit at all)"),
    "rateLimiting.requestsPerMinute": M("rate_limit_rpm", "int", "--rate-limit-rpm"),
    "rateLimiting.requestsPerHour": M("rate_limit_rph", "int", "--rate-limit-rph"),
    "rateLimiting.bytesPerMinute": M("rate_limit_bytes_pm", "int", "--rate-limit-bytes-pm"),
    "platform.type": N("no effect here: awf's API proxy needs no platform hint"),
    # enclaves (an array of objects: [] stands for each element)
    **{f"enclaves[].{k}": R(_ENCLAVE) for k in (
        "script.maxScriptBytes", "agent.engine", "agent.profile", "agent.model",
        "agent.maxTaskBytes", "agent.maxModelRequests", "agent.maxModelTokens",
        "repos[].repo", "repos[].sensitivity", "timeout", "runtime", "image", "memoryLimit",
        "cpuLimit", "pidsLimit", "tmpfsLimit", "maxOutputBytes", "maxInvocations")},
}

# Keys whose value is a free-form mapping or list: the row covers everything inside them.
OPAQUE = frozenset({
    "apiProxy.providers", "apiProxy.modelMultipliers", "apiProxy.models",
    "apiProxy.targets.copilot.extraHeaders", "apiProxy.targets.copilot.extraBodyFields",
})

# Objects and arrays of objects that hold rows: walked, and an unknown key inside is an error.
# An empty `script: {}` or `agent: {}` enclave entry still asks for an enclave.
CONTAINERS = frozenset(
    path.rsplit(".", i)[0]
    for path in SCHEMA for i in range(1, path.count(".") + 1)
)
REFUSED_CONTAINERS = {"enclaves": _ENCLAVE}


@dataclass(frozen=True, slots=True)
class Flag:
    """An upstream flag that is not one of ours (nor an alias of one): added to `awf run`."""

    names: tuple[str, ...]
    arity: str  # bool | value | append | optional (a value may follow)
    row: Row


def _f(names: str, arity: str, row: Row) -> Flag:
    return Flag(tuple(names.split()), arity, row)


_ASK = "not supported yet: it would not hold; remove it"
FLAGS: tuple[Flag, ...] = (
    _f("-b --build-local", "bool", N(_IMAGES)),
    _f("--image-registry", "value", N(_IMAGES)),
    _f("--image-tag", "value", N(_IMAGES)),
    _f("--skip-pull", "bool", N(_IMAGES)),
    _f("--enable-api-proxy", "bool", N("the API proxy sidecar starts whenever a key exists",
                                      inert=(True, False, None))),
    _f("--network-isolation", "bool", N("awf always isolates the command",
                                        inert=(True, False, None))),
    _f("--no-network-isolation", "bool", R("awf always isolates the command; it cannot be "
                                           "turned off; remove it")),
    _f("--legacy-security", "bool", SCHEMA["security.legacySecurity"]),
    _f("--security-mode", "value", SCHEMA["security.securityMode"]),
    _f("--allow-host-service-ports", "value", SCHEMA["security.allowHostServicePorts"]),
    _f("--topology-attach", "append", SCHEMA["network.topologyAttach"]),
    _f("--session-state-dir", "value", SCHEMA["logging.sessionStateDir"]),
    _f("--ruleset-file", "append", R("not supported yet: list the domains with "
                                     "--allow-domains-file (one per line) instead")),
    _f("--docker-host-path-prefix", "value", SCHEMA["container.dockerHostPathPrefix"]),
    _f("--container-runtime", "value", SCHEMA["container.containerRuntime"]),
    _f("--cloud-hypervisor-preview", "bool", N(_CH)),
    *(_f(f"--cloud-hypervisor-{k}", "value", N(_CH)) for k in (
        "binary", "kernel", "rootfs", "supervisor", "vcpus", "memory-mib", "api-timeout-ms",
        "binary-sha256", "virtiofsd-sha256", "kernel-sha256", "rootfs-sha256",
        "supervisor-sha256")),
    _f("--dns-over-https", "optional", R("not supported yet: the sandbox's DNS forwarder "
                                         "queries --dns-servers directly; remove it")),
    _f("--enable-dlp", "bool", SCHEMA["security.enableDlp"]),
    *(_f(f"--{name}", "value", R(_LATER_API)) for name in (
        "openai-base-url-env", "openai-api-base-path", "anthropic-api-base-path",
        "openai-api-auth-header", "anthropic-api-auth-header", "gemini-api-base-path",
        "vertex-api-target", "vertex-api-base-path")),
    _f("--anthropic-auto-cache", "bool", N(_CACHE)),
    _f("--anthropic-cache-tail-ttl", "value", N(_CACHE)),
    _f("--enable-token-steering", "bool", N(_CACHE)),
    *(_f(f"--{k}", "value", R(_CAP)) for k in (
        "max-model-multiplier", "max-model-multiplier-cap", "max-permission-denied",
        "max-cache-misses")),
    _f("--difc-proxy-host", "value", SCHEMA["security.difcProxy.host"]),
    _f("--difc-proxy-ca-cert", "value", SCHEMA["security.difcProxy.caCert"]),
    _f("--reflect", "bool", R("not supported: awf's API proxy has no /reflect endpoint; "
                              "awf run --print-config shows the effective config")),
)

# Upstream flags that are ours under the same name or as an alias (docs/config.md lists them).
OURS = {
    "--config": "config", "-d": "allow_domains", "--allow-domains": "allow_domains",
    "--allow-domains-file": "allow_domains_file", "--block-domains": "block_domains",
    "--block-domains-file": "block_domains_file", "--agent-image": "agent_image",
    "--docker-host": "docker_host", "-e": "env", "--env": "env", "--env-all": "env_all",
    "--exclude-env": "exclude_env", "--env-file": "env_file", "-v": "volumes",
    "--mount": "volumes", "--container-workdir": "container_workdir",
    "--memory-limit": "memory_limit", "--pids-limit": "pids_limit", "--tty": "tty",
    "--dns-servers": "dns_servers", "--enable-host-access": "enable_host_access",
    "--allow-host-ports": "allow_ports", "--enable-dind": "enable_docker",
    "--no-enable-api-proxy": "no_api_proxy", "--copilot-api-target": "copilot_api_target",
    "--openai-api-target": "openai_api_target",
    "--anthropic-api-target": "anthropic_api_target",
    "--gemini-api-target": "gemini_api_target", "--log-level": "log_level",
    "-k": "keep_containers", "--keep-containers": "keep_containers",
    "--agent-timeout": "agent_timeout", "--work-dir": "work_dir",
    "--proxy-logs-dir": "proxy_logs_dir", "--audit-dir": "audit_dir",
    "--diagnostic-logs": "diagnostics", "--upstream-proxy": "upstream_proxy",
    "--rate-limit-rpm": "rate_limit_rpm", "--rate-limit-rph": "rate_limit_rph",
    "--rate-limit-bytes-pm": "rate_limit_bytes_pm", "--no-rate-limit": "no_rate_limit",
    "--ssl-bump": "ssl_bump", "--allow-urls": "allow_urls",
}

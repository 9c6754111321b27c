"""The two ways `awf run` builds a sandbox: `netns` (a network namespace on the host) and `docker`
(containers on a Docker network). Each is a script of steps over `awf.run`, the part they share."""

# awf-agent: the container the user's command runs in (ARCHITECTURE.md section 5).
# Built by containers/images.py with network_mode none; agent/ in the build context holds the
# files of containers/agent/ (the entrypoint, later).
# Seam: the one-shot-token library is compiled in a `FROM awf-base-build` stage added here by a
# later issue, and only its .so is copied into this image.
# Until then the agent image is awf-base under another name (its CMD is /bin/bash).
ARG BASE
FROM ${BASE}

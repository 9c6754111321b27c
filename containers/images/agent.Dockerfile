# awf-agent: the container the user's command runs in (ARCHITECTURE.md section 5).
# Built by containers/images.py with network_mode none: agent/ in the build context holds the
# files of containers/agent/ (entry.py, PID 1 of the container) and one_shot_token.so, compiled
# while the context was filled. In chroot host mode the command runs in /host, the host's own
# tools; this image is only the entrypoint's world.
ARG BASE
FROM ${BASE}
COPY agent/ /usr/local/lib/awf/
RUN chmod 0755 /usr/local/lib/awf/one_shot_token.so && mkdir -p /host /run/awf
# No ENTRYPOINT: awf gives `python3 /usr/local/lib/awf/entry.py` itself, and the image stays
# usable as a plain tool image (tests, siblings through the guard).

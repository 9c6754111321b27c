# awf-pydeps: awf-base plus the venv /opt/awf holding our runtime dependencies, and nothing of
# ours. It changes only with the requirement set, so a source edit rebuilds just awf-runtime,
# a thin layer on top (seconds, not half a minute).
# Built by containers/images.py with network_mode none: wheels/ in the build context holds the
# wheels for the image's CPython and requirements.txt. Only the venv reaches this image.
# Labels come from awf-base; every instruction is a step, so there are few.
ARG BASE
FROM ${BASE} AS venv
COPY wheels/ /tmp/wheels/
# The venv has no pip of its own: Debian's pip wheel (python3-venv) runs from its zip file;
# a --base-image without it has a pip wheel among wheels/ (awf adds it to the set).
RUN python3 -m venv --without-pip /opt/awf \
 && pip=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | head -n 1) \
 && pip=${pip:-$(ls /tmp/wheels/pip-*.whl | head -n 1)} \
 && /opt/awf/bin/python "$pip/pip" install --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels -r /tmp/wheels/requirements.txt

FROM ${BASE}
COPY --from=venv /opt/awf /opt/awf
ENV PATH=/opt/awf/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# A placeholder: the orchestrator always gives the command (proxy, keeper, sidecar, guard).
CMD ["awf-proxy", "--version"]

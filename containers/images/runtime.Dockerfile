# awf-runtime: awf-proxy, the netns keeper, the API sidecar and the Docker guard.
# Built by containers/images.py FROM awf-pydeps (BASE) with network_mode none: awf/ in the
# build context holds our own wheel; its dependencies are in the venv already.
ARG BASE
FROM ${BASE}
COPY awf/ /tmp/awf/
# pip: Debian's wheel, or the venv's own (a --base-image without Debian's python3-venv)
RUN pip=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | head -n 1) \
 && if [ -n "$pip" ]; then pip="$pip/pip"; else pip="-m pip"; fi \
 && /opt/awf/bin/python $pip install --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check /tmp/awf/*.whl \
 && rm -rf /tmp/awf

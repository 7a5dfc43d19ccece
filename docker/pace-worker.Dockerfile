# pace-worker: Pacemaker (ACE) training, active set, γ and MaxVol selection on a GPU: TensorFlow's CUDA
# build (tensorflow[and-cuda], NVIDIA's CUDA/cuDNN wheels) beside the pinned stack. Serves gpu-pool; the
# host needs the NVIDIA driver and the NVIDIA Container Toolkit (docker-compose.yml reserves the GPU).
# Build from the project root (the install path is the project's own: docker/install-worker.sh runs
# scripts/bootstrap.sh, then checks the result; CI runs the same script, see tests/docker):
#   docker build -f docker/pace-worker.Dockerfile -t mlip-autopipec/pace-worker .
FROM python:3.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV MLIP_AUTOPIPEC_ROOT=/opt/mlip-autopipec \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/mlip-autopipec

COPY pyproject.toml prefect.yaml prefect.toml ./
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY src/ src/
COPY flows/ flows/
COPY tasks/ tasks/
COPY deployments/ deployments/
COPY campaigns/ campaigns/
COPY docker/install-worker.sh docker/check_worker.py docker/
RUN MLIP_CUDA=1 docker/install-worker.sh pace \
    && useradd --create-home --uid 1000 mlip \
    && mkdir -p /data && chown mlip /data

# Flow runs start in the checkout (prefect.yaml's pull step reads MLIP_AUTOPIPEC_ROOT); campaign
# directories belong on a volume at /data, stores on the PostgreSQL server.
ENV PATH=/opt/mlip-autopipec/.venv/bin:$PATH
# mlip, created above; numeric so that the host resolves it too
USER 1000
CMD ["prefect", "worker", "start", "--pool", "gpu-pool"]

# fairchem-worker: EquiformerV2 / GemNet-OC training and inference (fairchem-core 1.10) on a GPU.
# FairChem lives in its own interpreter (.venv-fairchem: torch 2.4.1, the CUDA build from PyPI, numpy <2,
# torch_scatter / torch_sparse compiled by scripts/setup_fairchem.sh) beside the project's .venv that
# runs the flows; the FairChem backend finds it at the project root. Serves gpu-pool; the host needs the
# NVIDIA driver and the NVIDIA Container Toolkit. Build from the project root:
#   docker build -f docker/fairchem-worker.Dockerfile -t mlip-autopipec/fairchem-worker .
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
# The torch worker's install path, then the FairChem interpreter. An image has cores to spare:
# compile with them, and with the compilers' full optimisation.
RUN MLIP_CUDA=1 docker/install-worker.sh torch \
    && PYTHON=python3.11 MAX_JOBS="$(nproc)" FAIRCHEM_CXX_OPT=-O3 scripts/setup_fairchem.sh \
    && useradd --create-home --uid 1000 mlip \
    && mkdir -p /data && chown mlip /data

ENV PATH=/opt/mlip-autopipec/.venv/bin:$PATH \
    MLIP_FAIRCHEM_PYTHON=/opt/mlip-autopipec/.venv-fairchem/bin/python
USER 1000
CMD ["prefect", "worker", "start", "--pool", "gpu-pool"]

# stacgit in a container, for orchestrators (Kubernetes Jobs, Argo, Airflow's KubernetesPodOperator):
#   docker build -t stacgit .
#   docker run --rm -v "$PWD:/repo" -w /repo stacgit build
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 stacgit
WORKDIR /opt/stacgit
COPY pyproject.toml README.md ./
COPY stacgit ./stacgit
RUN pip install --no-cache-dir .
USER stacgit
# mounted repositories belong to another uid: let git read them
RUN git config --global --add safe.directory '*'
WORKDIR /repo
ENTRYPOINT ["stacgit"]
CMD ["--help"]

# An immutable image holding a model repository written by `tritium build`; the Triton pod's init
# container copies it into the model volume. Tag it with the build id:
#   docker build -f deploy/k8s/model-repository.Dockerfile -t registry.example.com/tritium-model-repository:<build_id> .
FROM busybox:1.37
COPY model_repository /model_repository

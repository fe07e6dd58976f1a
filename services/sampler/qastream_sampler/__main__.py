from qastream_sampler.app import build
from qastream_shared.runtime import serve

serve(build)

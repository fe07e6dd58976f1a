from qastream_shared.runtime import serve

from qastream_sampler.app import build

serve(build)

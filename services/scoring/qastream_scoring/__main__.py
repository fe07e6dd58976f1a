from qastream_shared.runtime import serve

from qastream_scoring.app import build

serve(build)

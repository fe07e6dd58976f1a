from qastream_scoring.app import build
from qastream_shared.runtime import serve

serve(build)

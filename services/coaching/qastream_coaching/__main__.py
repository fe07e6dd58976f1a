from qastream_coaching.app import build
from qastream_shared.runtime import serve

serve(build)

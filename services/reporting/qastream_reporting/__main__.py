from qastream_reporting.app import build
from qastream_shared.runtime import serve

serve(build)

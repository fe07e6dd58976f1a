from qastream_ingest.app import build
from qastream_shared.runtime import serve

serve(build)

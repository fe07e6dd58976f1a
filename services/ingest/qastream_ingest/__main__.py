from qastream_shared.runtime import serve

from qastream_ingest.app import build

serve(build)

# Sourced by the scripts that build: puts Swift on PATH (preinstalled under /opt/swift on this
# kind of machine) or stops with a clear message.
if ! command -v swift >/dev/null; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        export PATH=/opt/swift/usr/bin:$PATH
    else
        echo "error: swift not found (expected on PATH or in /opt/swift/usr/bin); install Swift 6 first" >&2
        exit 1
    fi
fi

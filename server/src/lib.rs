//! gridsync-server: the central merge server (see ARCHITECTURE.md).

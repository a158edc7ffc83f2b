"""The local cloud stack (fake-gcs-server, Firestore emulator, the function, the Eventarc stand-in relay)."""

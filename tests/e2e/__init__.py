"""End-to-end tests: real ``pigeon`` processes talking HTTP on 127.0.0.1."""

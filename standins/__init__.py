"""Stand-ins for services that cannot be installed on the test machines."""

"""The router: route table → candidates → attempt → classify → decide."""

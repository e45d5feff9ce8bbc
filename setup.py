"""Installs the package and its twistd/endpoint dropins.

twisted/plugins must not become a regular package (Twisted merges every
twisted/plugins directory it finds on sys.path), so it has no __init__.py
and is named here explicitly instead of being found by find_packages.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["twisted_logstash", "twisted_logstash.*"]),
        "twisted.plugins",
    ],
    package_data={"twisted.plugins": ["logstash_*.py"], "twisted_logstash.pipelines": ["*.lark"]},
)

"""Security checks that are not a single service's concern: dependency audit, secret scans."""

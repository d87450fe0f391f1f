"""Framework-free core shared by ``convert`` and ``models``: config reading (``configuration``) and tensor I/O
(``tensor_io``). Neither ``convert`` nor ``models`` imports the other; both import this."""

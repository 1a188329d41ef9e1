// The Python module reconad._C. Importing it loads this shared library, whose static
// initialisers register every op (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in csrc/<op>/).
// It exposes no Python functions of its own: ops are reached through torch.ops.reconad.
#include <Python.h>

#ifdef RECONAD_WITH_CUDA
static const bool kWithCuda = true;
#else
static const bool kWithCuda = false;
#endif

static PyMethodDef kMethods[] = {{nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C",
                                     "reconad's compiled operators (see reconad.ops).", -1, kMethods};

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&kModule);
  if (m != nullptr) {
    PyModule_AddObject(m, "with_cuda", PyBool_FromLong(kWithCuda ? 1 : 0));
  }
  return m;
}
